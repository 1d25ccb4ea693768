"""Drift of a new ticket history against the data the champion learned from.

Per feature (each head's label shares, language shares, text length, vocabulary) two figures:
the population stability index (PSI) and the Jensen-Shannon divergence (JS, base 2: 0 = the same
distribution, 1 = nothing in common), each over the same buckets (categories, quantile bins of
the reference's text lengths, or the most frequent words plus one "other" bucket). A feature is
drifted when its PSI reaches the PSI threshold (labels, language, length) or its JS reaches the
JS threshold (vocabulary: with thousands of small word buckets PSI says little).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

# Shares of zero are replaced by this before PSI takes their logarithm.
EPSILON = 1e-4
OTHER = "<other>"
UNKNOWN = "<unknown>"
WORD = re.compile(r"[^\W\d_]{2,}")


def psi(reference: Sequence[float], current: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population stability index of two distributions over the same buckets (counts or shares):
    sum over buckets of (current - reference) * ln(current / reference), on shares."""
    ref, cur = _shares(reference), _shares(current)
    ref, cur = np.maximum(ref, epsilon), np.maximum(cur, epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def jensen_shannon(reference: Sequence[float], current: Sequence[float]) -> float:
    """Jensen-Shannon divergence in bits (0..1) of two distributions over the same buckets."""
    p, q = _shares(reference), _shares(current)
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        used = a > 0  # 0 * log(0) is 0; b > 0 wherever a > 0 since b is a mean with a
        return float(np.sum(a[used] * np.log2(a[used] / b[used])))

    return max(0.0, 0.5 * kl(p, m) + 0.5 * kl(q, m))


def _shares(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    total = array.sum()
    if total <= 0:
        raise ValueError("a distribution needs a positive total")
    return array / total


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.2
    js: float = 0.1


@dataclass(frozen=True)
class FeatureDrift:
    feature: str  # e.g. "label:urgency", "language", "text_length", "vocabulary"
    kind: str  # categorical, numeric or vocabulary
    reference_rows: int
    current_rows: int
    psi: float
    js: float
    drifted: bool
    rule: str  # what decided `drifted`, e.g. "psi >= 0.2"
    # Share per bucket on each side (for the vocabulary: the buckets that moved most).
    reference: dict[str, float]
    current: dict[str, float]
    notes: dict[str, Any] = field(default_factory=dict)


def _compare(
    feature: str,
    kind: str,
    reference_counts: pd.Series,
    current_counts: pd.Series,
    thresholds: Thresholds,
    *,
    rows: tuple[int, int],
    decide_by: str,
    notes: dict[str, Any] | None = None,
    shown: Iterable[str] | None = None,
) -> FeatureDrift:
    buckets = reference_counts.index.union(current_counts.index, sort=False)
    ref = reference_counts.reindex(buckets, fill_value=0).astype(float)
    cur = current_counts.reindex(buckets, fill_value=0).astype(float)
    value_psi, value_js = psi(ref, cur), jensen_shannon(ref, cur)
    drifted = value_js >= thresholds.js if decide_by == "js" else value_psi >= thresholds.psi
    keep = list(shown) if shown is not None else list(buckets)
    return FeatureDrift(
        feature=feature,
        kind=kind,
        reference_rows=rows[0],
        current_rows=rows[1],
        psi=round(value_psi, 6),
        js=round(value_js, 6),
        drifted=bool(drifted),
        rule=f"js >= {thresholds.js}" if decide_by == "js" else f"psi >= {thresholds.psi}",
        reference={str(b): round(float(ref[b] / ref.sum()), 6) for b in keep},
        current={str(b): round(float(cur[b] / cur.sum()), 6) for b in keep},
        notes=notes or {},
    )


def categorical_drift(
    feature: str, reference: pd.Series, current: pd.Series, thresholds: Thresholds
) -> FeatureDrift:
    """Shares of each value (missing values count as one bucket, "<unknown>")."""

    def counts(values: pd.Series) -> pd.Series:
        return values.astype("string").fillna(UNKNOWN).value_counts(sort=False).sort_index()

    rows = (len(reference), len(current))
    return _compare(
        feature, "categorical", counts(reference), counts(current), thresholds, rows=rows, decide_by="psi"
    )


def numeric_drift(
    feature: str, reference: pd.Series, current: pd.Series, thresholds: Thresholds, bins: int = 10
) -> FeatureDrift:
    """Shares of each quantile bin of the reference, (edge, next edge], plus one bin above the
    reference's maximum: values beyond anything seen before show up even when the reference
    is all alike."""
    ref = pd.to_numeric(reference, errors="coerce").dropna().to_numpy(dtype=float)
    cur = pd.to_numeric(current, errors="coerce").dropna().to_numpy(dtype=float)
    quantiles = np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(np.append(quantiles, ref.max()))
    names = _bin_names(edges)

    def counts(values: np.ndarray) -> pd.Series:
        # side="left": a value equal to an edge falls into the bin that ends at that edge.
        which = np.searchsorted(edges, values, side="left")
        return pd.Series(np.bincount(which, minlength=len(names)), index=names)

    notes = {
        "reference_mean": round(float(ref.mean()), 2),
        "current_mean": round(float(cur.mean()), 2),
        "reference_median": float(np.median(ref)),
        "current_median": float(np.median(cur)),
    }
    return _compare(
        feature,
        "numeric",
        counts(ref),
        counts(cur),
        thresholds,
        rows=(len(ref), len(cur)),
        decide_by="psi",
        notes=notes,
    )


def _bin_names(edges: np.ndarray) -> list[str]:
    shown = [f"{edge:g}" for edge in edges]
    return [f"<= {shown[0]}"] + [f"{a} - {b}" for a, b in pairwise(shown)] + [f"> {shown[-1]}"]


def words(texts: Iterable[str]) -> Counter[str]:
    """Word counts: lower-cased runs of 2+ letters (digits and ids say little about drift)."""
    counter: Counter[str] = Counter()
    for text in texts:
        counter.update(WORD.findall(str(text).lower()))
    return counter


def vocabulary_drift(
    reference_texts: pd.Series,
    current_texts: pd.Series,
    thresholds: Thresholds,
    *,
    size: int = 500,
    sample: int = 20_000,
    seed: int = 0,
    shown: int = 10,
) -> FeatureDrift:
    """Word frequencies over the `size` most frequent words of both sides plus "<other>".

    Notes: the share of the new history's words never seen in the reference, and the words whose
    share rose and fell most."""

    def sampled(texts: pd.Series) -> pd.Series:
        return texts.sample(n=sample, random_state=seed) if len(texts) > sample else texts

    ref_words, cur_words = words(sampled(reference_texts)), words(sampled(current_texts))
    if not ref_words or not cur_words:
        raise ValueError("no words to compare")
    top = [word for word, _ in (ref_words + cur_words).most_common(size)]

    def counts(counter: Counter[str]) -> pd.Series:
        kept = {word: counter.get(word, 0) for word in top}
        kept[OTHER] = sum(counter.values()) - sum(kept.values())
        return pd.Series(kept, dtype=float)

    ref, cur = counts(ref_words), counts(cur_words)
    change = (cur / cur.sum() - ref / ref.sum()).drop(OTHER).sort_values()
    unseen = sum(count for word, count in cur_words.items() if word not in ref_words)
    notes = {
        "unseen_word_share": round(unseen / sum(cur_words.values()), 6),
        "reference_words": int(sum(ref_words.values())),
        "current_words": int(sum(cur_words.values())),
        "rising": list(change.index[::-1][:shown]),
        "falling": list(change.index[:shown]),
    }
    moved = list(dict.fromkeys([*notes["rising"], *notes["falling"]]))
    return _compare(
        "vocabulary",
        "vocabulary",
        ref,
        cur,
        thresholds,
        rows=(len(reference_texts), len(current_texts)),
        decide_by="js",
        notes=notes,
        shown=moved,
    )


@dataclass(frozen=True)
class DriftReport:
    features: list[FeatureDrift]
    skipped: dict[str, str]  # feature -> why it was not compared
    thresholds: Thresholds

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "thresholds": asdict(self.thresholds),
            "drifted": self.drifted,
            "features": [asdict(f) for f in self.features],
            "skipped": self.skipped,
        }

    def to_markdown(self, title: str = "Drift of the new history against the training data") -> str:
        lines = [
            f"# {title}",
            "",
            f"Drifted: PSI >= {self.thresholds.psi} (labels, language, text length) or "
            f"JS >= {self.thresholds.js} (vocabulary).",
            "",
            "| feature | reference rows | new rows | PSI | JS | drifted | details |",
            "|---|---:|---:|---:|---:|---|---|",
        ]
        for f in self.features:
            lines.append(
                f"| {f.feature} | {f.reference_rows:,} | {f.current_rows:,} | {f.psi:.3f} | {f.js:.3f} | "
                f"{'**yes**' if f.drifted else 'no'} | {_details(f)} |"
            )
        for feature, why in self.skipped.items():
            lines.append(f"| {feature} | | | | | not compared | {why} |")
        return "\n".join(lines) + "\n"


def _details(feature: FeatureDrift) -> str:
    if feature.kind == "numeric":
        n = feature.notes
        return (
            f"mean {n['reference_mean']:g} -> {n['current_mean']:g}, "
            f"median {n['reference_median']:g} -> {n['current_median']:g}"
        )
    if feature.kind == "vocabulary":
        n = feature.notes
        return f"unseen words {n['unseen_word_share']:.1%}; rising: {', '.join(n['rising'][:5])}"
    moves = sorted(
        feature.reference, key=lambda b: -abs(feature.current.get(b, 0) - feature.reference.get(b, 0))
    )
    return ", ".join(f"{b} {feature.reference[b]:.1%} -> {feature.current[b]:.1%}" for b in moves[:4])


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    heads: Sequence[str],
    thresholds: Thresholds = Thresholds(),
    length_bins: int = 10,
    vocabulary_size: int = 500,
    vocabulary_sample: int = 20_000,
) -> DriftReport:
    """Compare two canonical ticket frames (urgency.data): each head's label shares (rows that
    carry the label), language shares, text length and vocabulary (text: subject and body)."""
    from urgency.language import normalise_languages
    from urgency.text import ticket_text

    features: list[FeatureDrift] = []
    skipped: dict[str, str] = {}
    for head in heads:
        ref, cur = reference[head].dropna(), current[head].dropna()
        if ref.empty or cur.empty:
            skipped[f"label:{head}"] = f"no {head} labels in the {'reference' if ref.empty else 'new'} data"
            continue
        features.append(categorical_drift(f"label:{head}", ref, cur, thresholds))
    if reference.empty or current.empty:
        skipped["text"] = "no rows to compare"
        return DriftReport(features, skipped, thresholds)
    # Normalised again here: a frame built elsewhere than `urgency.data` may still say `en-US`.
    features.append(
        categorical_drift(
            "language",
            normalise_languages(reference["language"]),
            normalise_languages(current["language"]),
            thresholds,
        )
    )
    # No length cut: a shift to longer texts is drift even when models read only the start.
    ref_text = ticket_text(reference["subject"], reference["body"], 10**9)
    cur_text = ticket_text(current["subject"], current["body"], 10**9)
    features.append(
        numeric_drift("text_length", ref_text.str.len(), cur_text.str.len(), thresholds, length_bins)
    )
    try:
        features.append(
            vocabulary_drift(ref_text, cur_text, thresholds, size=vocabulary_size, sample=vocabulary_sample)
        )
    except ValueError as error:
        skipped["vocabulary"] = str(error)
    return DriftReport(features, skipped, thresholds)

"""Probable duplicates (issue 19.2): a new ticket that reads like an open ticket of the same
requester or organisation, created within the window.

`duplicate_of` finds it (nearest neighbours in the similar-tickets index, `urgency.similar`, at
the rules file's `duplicates.threshold` or more, then the store's facts: open, same requester or
organisation) and explains it the way the rules explain ("duplicate of T-12 (0.93, same
requester, open)");
the rule stage that links, lowers the priority or routes to the same agent reads its answer.

The threshold is chosen on labelled pairs (`data/labelled/duplicate_pairs.csv`, data card in
data/README.md): `load_pairs` joins them to the shared data by row and digest, as the other
hand-labelled sets are (`urgency.hand_labelled`), and `choose_threshold` takes the lowest
similarity whose precision on the pairs reaches the target (bench/bench_duplicates.py prints it).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from urgency.errors import DataValidationError, InputError

if TYPE_CHECKING:
    from urgency.rules.schema import DuplicatesSection
    from urgency.similar import PrefetchedIndex, SimilarIndex
    from urgency.store import Store

# Statuses of a ticket still being worked on (the store's OPEN_STATUSES, without importing it).
OPEN = ("new", "open", "pending", "on_hold")
PAIRS_FILE = Path("data/labelled/duplicate_pairs.csv")
PAIR_COLUMNS = ("pair", "source_a", "row_a", "sha256_a", "source_b", "row_b", "sha256_b", "duplicate")


@dataclass(frozen=True)
class DuplicateMatch:
    """The open ticket a new one probably duplicates, and why."""

    ticket_id: str
    similarity: float
    same: str  # the field whose value both share ("requester", "organization")
    status: str  # the open ticket's status, or "unknown" (scored in the window, no state known)
    explanation: str
    assignee: str | None = None  # the open ticket's agent, when one has it

    def as_dict(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "similarity": self.similarity,
            "same": self.same,
            "status": self.status,
            "explanation": self.explanation,
            "assignee": self.assignee,
        }


def _value(fields: Mapping[str, Any] | None, name: str) -> str | None:
    """A field's value as compared: text in Unicode compatibility form (NFKC: composed and
    decomposed accents, full-width letters alike), trimmed, case-folded; None when missing or
    empty."""
    if not fields:
        return None
    value = fields.get(name)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", str(value)).casefold()).strip()
    return text or None


def shared_field(
    new: Mapping[str, Any] | None,
    old: Mapping[str, Any] | None,
    names: Sequence[str],
    columns: Mapping[str, str] | None = None,
) -> str | None:
    """The first of `names` whose value both tickets have and is equal, else None. `columns`:
    a name's column in the tickets' fields (the rules' `fields.<name>.column`), else the name."""
    for name in names:
        column = (columns or {}).get(name, name)
        value = _value(new, column)
        if value is not None and value == _value(old, column):
            return name
    return None


def is_open(fact: Mapping[str, Any]) -> str | None:
    """The status under which a ticket counts as open: its state when one of OPEN; "unknown"
    when the store knows no state and no resolution (a scored ticket nobody has closed); else None."""
    status = fact.get("status")
    if status is not None:
        return status if status in OPEN else None
    return None if fact.get("resolved_at") is not None else "unknown"


def explain(ticket_id: str, similarity: float, same: str, status: str) -> str:
    return f"duplicate of {ticket_id} ({similarity:.2f}, same {same}, {status})"


def duplicate_of(
    index: SimilarIndex | PrefetchedIndex,
    store: Store,
    vector: Any,
    fields: Mapping[str, Any] | None,
    params: DuplicatesSection,
    *,
    ticket_id: str | None = None,
    created_at: datetime | None = None,
    columns: Mapping[str, str] | None = None,
) -> DuplicateMatch | None:
    """The open ticket that the ticket with this sentence `vector` and rule `fields` probably
    duplicates: the earliest created (ties: the most similar) indexed ticket, at
    `params.threshold` or more among the
    `params.candidates` nearest, created in the `params.window_days` before `created_at` (now
    when None), open (`is_open`), sharing a value of one of `params.same_fields`. None when
    there is none (or the vector is NaN: no text). The ticket itself (`ticket_id`) is skipped.
    `fields` are keyed by column (as a ticket carries them; `columns` maps a same field's name to
    its column)."""
    if not np.isfinite(np.asarray(vector, dtype=np.float32)).all():
        return None
    when = created_at or datetime.now(UTC)
    since = when - timedelta(days=params.window_days)
    excluded = [ticket_id] if ticket_id is not None else []
    found = index.query(vector, params.candidates, exclude_ids=excluded, created_after=since)[0]
    close = [neighbour for neighbour in found if neighbour.similarity >= params.threshold]
    if not close:
        return None
    facts = store.ticket_facts([neighbour.ticket_id for neighbour in close])
    matches = []
    for neighbour in close:
        fact = facts.get(neighbour.ticket_id)
        if fact is None:
            continue
        status = is_open(fact)
        same = shared_field(fields, fact.get("fields"), params.same_fields, columns)
        if status is None or same is None:
            continue
        created = fact.get("created_at")
        matches.append(
            (created.timestamp() if created is not None else float("inf"), neighbour, same, status, fact)
        )
    if not matches:
        return None
    # The first of them, not the closest: a customer's third copy links to their first ticket,
    # where the helpdesk merges, rather than to the second copy (ties: the most similar).
    _created, neighbour, same, status, fact = min(matches, key=lambda match: (match[0], -match[1].similarity))
    return DuplicateMatch(
        ticket_id=neighbour.ticket_id,
        similarity=neighbour.similarity,
        same=same,
        status=status,
        explanation=explain(neighbour.ticket_id, neighbour.similarity, same, status),
        assignee=fact.get("assignee"),
    )


def duplicates_in_batch(
    vectors: np.ndarray,
    fields: Sequence[Mapping[str, Any] | None],
    ids: Sequence[str],
    created: Sequence[datetime],
    params: DuplicatesSection,
    *,
    columns: Mapping[str, str] | None = None,
) -> list[DuplicateMatch | None]:
    """Per ticket of one scoring call, the earlier ticket of the same call it probably duplicates
    (the index does not hold them yet): the first (in the call's order) at `params.threshold` or
    more, sharing one of `params.same_fields`, created in the window before it, another id. Its
    status is "unknown", as a scored ticket's is in the store until its helpdesk says more."""
    matrix = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = matrix / norms
    similarity = unit @ unit.T  # NaN rows (no text) compare as NaN: never at the threshold
    window = timedelta(days=params.window_days)
    found: list[DuplicateMatch | None] = []
    for later in range(len(ids)):
        match = None
        for earlier in range(later):
            close = similarity[later, earlier] >= params.threshold
            in_window = created[later] - window <= created[earlier] <= created[later]
            if not close or not in_window or ids[earlier] == ids[later]:
                continue
            same = shared_field(fields[later], fields[earlier], params.same_fields, columns)
            if same is not None:
                value = float(similarity[later, earlier])
                status = "unknown"
                match = DuplicateMatch(
                    ids[earlier], value, same, status, explain(ids[earlier], value, same, status)
                )
                break
        found.append(match)
    return found


# ---------------------------------------------------------------------------------------------
# Labelled pairs and the threshold


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    precision: float
    recall: float
    positives: int
    negatives: int
    target_precision: float
    reached: bool  # False: no threshold reached the target; the most precise one is given


def pr_at(similarities: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    """Precision and recall of "duplicate when similarity >= threshold" on labelled pairs
    (precision 1.0 when nothing is flagged)."""
    flagged = similarities >= threshold
    true = int((flagged & labels).sum())
    precision = true / int(flagged.sum()) if flagged.any() else 1.0
    recall = true / int(labels.sum()) if labels.any() else 0.0
    return precision, recall


def choose_threshold(
    similarities: Sequence[float] | np.ndarray,
    labels: Sequence[bool] | np.ndarray,
    target_precision: float = 0.9,
) -> ThresholdChoice:
    """The lowest threshold (one of the pairs' similarities) whose precision on the pairs is at
    least `target_precision`, and its recall; when none reaches it, the one of best precision."""
    sims = np.asarray(similarities, dtype=float)
    truth = np.asarray(labels, dtype=bool)
    if len(sims) != len(truth) or not len(sims):
        raise InputError(f"{len(sims)} similarities for {len(truth)} labels: expected as many, and some")
    best: tuple[float, float, float] | None = None
    for threshold in np.unique(sims):  # ascending: the first that reaches the target has most recall
        precision, recall = pr_at(sims, truth, float(threshold))
        if precision >= target_precision and truth[sims >= threshold].any():
            return ThresholdChoice(
                float(threshold),
                precision,
                recall,
                int(truth.sum()),
                int((~truth).sum()),
                target_precision,
                True,
            )
        if best is None or precision > best[1]:
            best = (float(threshold), precision, recall)
    assert best is not None
    return ThresholdChoice(
        best[0], best[1], best[2], int(truth.sum()), int((~truth).sum()), target_precision, False
    )


def load_pairs(path: Path, data_dir: Path) -> pd.DataFrame:
    """The labelled pairs at `path` joined to the shared data in `data_dir`: columns of the file
    plus `text_a`, `text_b`, the text a model reads (subject / summary and body / description,
    cleaned and cut as `text.ticket_text` does). Each side's `sha256_*`
    (`hand_labelled.text_digest`) is checked: a mismatch or a row past the end is a
    DataValidationError naming the file, line and side."""
    from urgency.cleaning import Cleaning
    from urgency.hand_labelled import text_digest
    from urgency.text import ticket_text

    if not path.exists():
        raise InputError(f"{path}: file not found")
    pairs = pd.read_csv(path, dtype={"sha256_a": str, "sha256_b": str, "note": str}, keep_default_na=False)
    missing = [column for column in PAIR_COLUMNS if column not in pairs.columns]
    if missing:
        raise DataValidationError(f"{path}: missing column(s) {', '.join(missing)}")
    sources: dict[str, pd.DataFrame] = {}
    for side in ("a", "b"):
        subjects, bodies = [], []
        for line, row in enumerate(pairs.itertuples(index=False), start=2):
            source, position = getattr(row, f"source_{side}"), int(getattr(row, f"row_{side}"))
            if source not in sources:
                sources[source] = _source_texts(data_dir, source, path)
            frame = sources[source]
            if not 0 <= position < len(frame):
                raise DataValidationError(
                    f"{path} line {line}: row_{side} {position} is past the end of {source}"
                )
            subject, body = frame.iloc[position]
            if text_digest(subject, body) != getattr(row, f"sha256_{side}"):
                raise DataValidationError(
                    f"{path} line {line} (pair {row.pair}): side {side} does not match row {position} of "
                    f"{source} (sha256_{side} differs): the shared file changed; re-join the pairs"
                )
            subjects.append(subject)
            bodies.append(body)
        text = ticket_text(
            pd.Series(subjects, dtype=object), pd.Series(bodies, dtype=object), 5000, Cleaning()
        )
        pairs[f"text_{side}"] = text.to_numpy()
    pairs["duplicate"] = pairs["duplicate"].astype(int).astype(bool)
    return pairs


# The sources pairs are drawn from: file and (subject, body) columns.
PAIR_SOURCES = {
    "support_tickets_synthetic": ("support_tickets_synthetic.csv", "subject", "body"),
    "jira_issues_priority": ("jira_issues_priority.csv", "summary", "description"),
}


def _source_texts(data_dir: Path, source: str, path: Path) -> pd.DataFrame:
    if source not in PAIR_SOURCES:
        raise DataValidationError(f"{path}: unknown source {source!r} (known: {', '.join(PAIR_SOURCES)})")
    name, subject, body = PAIR_SOURCES[source]
    file = data_dir / name
    if not file.exists():
        raise InputError(f"{file}: file not found (the pairs in {path} are joined to it)")
    return pd.read_csv(file)[[subject, body]]


def pair_similarities(vectors_a: np.ndarray, vectors_b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of `vectors_a` with the same row of `vectors_b`."""
    a = np.asarray(vectors_a, dtype=np.float32)
    b = np.asarray(vectors_b, dtype=np.float32)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.einsum("ij,ij->i", a, b) / np.where(norms == 0, 1, norms)


def threshold_table(
    similarities: np.ndarray, labels: np.ndarray, thresholds: Iterable[float]
) -> pd.DataFrame:
    """Precision and recall on the pairs at each threshold (the figures the docs quote)."""
    rows = []
    for threshold in thresholds:
        precision, recall = pr_at(similarities, labels, threshold)
        rows.append({"threshold": threshold, "precision": round(precision, 3), "recall": round(recall, 3)})
    return pd.DataFrame(rows)

"""Drift figures on hand-made distributions and frames, checked against hand computation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PROJECT, SHARED_DATA
from urgency.config import load_params
from urgency.data import load_tickets
from urgency.drift import (
    EPSILON,
    DriftReport,
    Thresholds,
    categorical_drift,
    drift_report,
    jensen_shannon,
    numeric_drift,
    psi,
    vocabulary_drift,
    words,
)
from urgency.history import history_source
from urgency.retrain import drift_reference


def test_psi_by_hand() -> None:
    # (0.6 - 0.5) ln(0.6/0.5) + (0.4 - 0.5) ln(0.4/0.5)
    assert psi([0.5, 0.5], [0.6, 0.4]) == pytest.approx(0.1 * math.log(1.2) - 0.1 * math.log(0.8))
    assert psi([5, 5], [6, 4]) == pytest.approx(0.040546, abs=1e-6)  # counts work like shares
    assert psi([1, 2, 3], [1, 2, 3]) == 0.0
    # An empty bucket counts as EPSILON: (0.5 - 1) ln(0.5) + (0.5 - 1e-4) ln(0.5 / 1e-4)
    expected = -0.5 * math.log(0.5) + (0.5 - EPSILON) * math.log(0.5 / EPSILON)
    assert psi([1, 0], [1, 1]) == pytest.approx(expected) == pytest.approx(4.604318, abs=1e-6)


def test_jensen_shannon_by_hand() -> None:
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)  # nothing in common
    assert jensen_shannon([3, 7], [3, 7]) == 0.0
    # p = (0.5, 0.5), q = (1, 0), m = (0.75, 0.25):
    # KL(p||m) = 0.5 log2(0.5/0.75) + 0.5 log2(0.5/0.25) = 0.207519, KL(q||m) = log2(1/0.75) = 0.415037
    assert jensen_shannon([1, 1], [1, 0]) == pytest.approx(0.5 * (0.207519 + 0.415037), abs=1e-6)
    assert jensen_shannon([1, 1], [1, 0]) == pytest.approx(jensen_shannon([1, 0], [1, 1]))  # symmetric
    with pytest.raises(ValueError, match="positive total"):
        jensen_shannon([0, 0], [1, 0])


def test_label_shares_drift_against_the_threshold() -> None:
    reference = pd.Series(["high"] * 5 + ["low"] * 5)
    current = pd.Series(["high"] * 8 + ["low"] * 2)
    drift = categorical_drift("label:urgency", reference, current, Thresholds(psi=0.2))
    # 0.3 ln(0.8/0.5) - 0.3 ln(0.2/0.5)
    assert drift.psi == pytest.approx(0.3 * math.log(1.6) - 0.3 * math.log(0.4), abs=1e-6)
    assert drift.drifted and drift.rule == "psi >= 0.2"
    assert drift.reference == {"high": 0.5, "low": 0.5} and drift.current == {"high": 0.8, "low": 0.2}
    assert (drift.reference_rows, drift.current_rows) == (10, 10)
    assert not categorical_drift("label:urgency", reference, current, Thresholds(psi=0.5)).drifted


def test_a_new_category_and_missing_values() -> None:
    reference = pd.Series(["en", "en", None, "de"])
    current = pd.Series(["en", "fr", "fr", None])
    drift = categorical_drift("language", reference, current, Thresholds())
    assert drift.reference == {"<unknown>": 0.25, "de": 0.25, "en": 0.5, "fr": 0.0}
    assert drift.current == {"<unknown>": 0.25, "de": 0.0, "en": 0.25, "fr": 0.5}
    expected = psi([1, 1, 2, 0], [1, 0, 1, 2])
    assert drift.psi == pytest.approx(expected, abs=1e-6) and drift.drifted


def test_text_length_bins_come_from_the_reference() -> None:
    reference = pd.Series(range(1, 11))  # two bins: median 5.5 and maximum 10 are the edges
    same = numeric_drift("text_length", reference, pd.Series(range(1, 11)), Thresholds(), bins=2)
    assert same.psi == 0.0 and not same.drifted
    assert same.reference == {"<= 5.5": 0.5, "5.5 - 10": 0.5, "> 10": 0.0}
    shorter = numeric_drift("text_length", reference, pd.Series([1, 2, 3, 9]), Thresholds(), bins=2)
    assert shorter.current == {"<= 5.5": 0.75, "5.5 - 10": 0.25, "> 10": 0.0}
    assert shorter.psi == pytest.approx(psi([5, 5, 0], [3, 1, 0]), abs=1e-6) and shorter.drifted
    longer = numeric_drift("text_length", reference, pd.Series([20] * 4), Thresholds(), bins=2)
    # shares (0.5, 0.5, 0) -> (0, 0, 1); empty buckets count as EPSILON
    expected = 2 * (EPSILON - 0.5) * math.log(EPSILON / 0.5) + (1 - EPSILON) * math.log(1 / EPSILON)
    assert longer.psi == pytest.approx(expected, abs=1e-5) and longer.drifted
    assert longer.notes["reference_mean"] == 5.5 and longer.notes["current_median"] == 20
    # A reference of one length still tells longer texts apart.
    alike = numeric_drift("text_length", pd.Series([14] * 10), pd.Series([31] * 10), Thresholds())
    assert alike.reference == {"<= 14": 1.0, "> 14": 0.0} and alike.drifted


def test_vocabulary_drift() -> None:
    texts = pd.Series(["printer is broken", "reset my password please"])
    same = vocabulary_drift(texts, texts, Thresholds(js=0.1))
    assert same.js == 0.0 and not same.drifted and same.notes["unseen_word_share"] == 0.0
    other = pd.Series(["flight delayed again", "flight cancelled"])
    moved = vocabulary_drift(texts, other, Thresholds(js=0.1))
    assert moved.js == pytest.approx(1.0) and moved.drifted and moved.rule == "js >= 0.1"
    assert moved.notes["unseen_word_share"] == 1.0
    assert moved.notes["rising"][0] == "flight"  # 2 of the 5 new words
    assert words(["Flight 123 to NYC, a"]) == {"flight": 1, "to": 1, "nyc": 1}  # no digits, no 1-letter words


def _frame(bodies: list[str], urgency: list[str | None], language: str | None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject": "",
            "body": bodies,
            "language": language,
            "urgency": urgency,
            "category": None,
            "sentiment": None,
        }
    )


def test_drift_report_names_every_feature_and_what_it_skipped() -> None:
    reference = _frame(["printer broken"] * 5 + ["password reset"] * 5, ["high"] * 5 + ["low"] * 5, "en")
    current = _frame(["printer broken"] * 5 + ["password reset"] * 5, ["high"] * 5 + ["low"] * 5, "en")
    report = drift_report(reference, current, heads=["urgency", "category"])
    assert [f.feature for f in report.features] == ["label:urgency", "language", "text_length", "vocabulary"]
    assert report.drifted == []
    assert report.skipped == {"label:category": "no category labels in the reference data"}

    shifted = _frame(["my flight was delayed for hours"] * 10, ["high"] * 8 + ["low"] * 2, "de")
    report = drift_report(reference, shifted, heads=["urgency"])
    assert report.drifted == ["label:urgency", "language", "text_length", "vocabulary"]
    data = report.to_dict()
    assert data["thresholds"] == {"psi": 0.2, "js": 0.1}
    markdown = report.to_markdown()
    assert "| label:urgency | 10 | 10 | 0.416 |" in markdown
    assert "en 100.0% -> 0.0%" in markdown


# ---------------------------------------------------------------------------------------------
# Like with like: a history from the same distribution raises no alarm, a shifted one does.


def _generated(rows: int, seed: int, *, shift: bool = False) -> pd.DataFrame:
    """Tickets drawn from one fixed distribution (labels, languages, vocabulary, lengths), or
    from a shifted one: other label shares, another language, other words."""
    rng = np.random.default_rng(seed)
    labels, label_p = ["high", "medium", "low"], [0.2, 0.5, 0.3]
    languages, language_p = ["en", "de", "es"], [0.6, 0.3, 0.1]
    vocabulary = ["printer", "password", "invoice", "access", "server", "laptop", "email", "vpn", "refund"]
    if shift:
        label_p, language_p = [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]
        vocabulary = ["flight", "baggage", "crew", "seat", "delay", "gate", "boarding", "lounge", "miles"]
    lengths = rng.integers(3, 40, rows) * (3 if shift else 1)
    return pd.DataFrame(
        {
            "subject": "",
            "body": [" ".join(rng.choice(vocabulary, size=n)) for n in lengths],
            "language": rng.choice(languages, size=rows, p=language_p),
            "urgency": rng.choice(labels, size=rows, p=label_p),
            "category": None,
            "sentiment": None,
        }
    )


def _figures(report: DriftReport) -> dict[str, tuple[float, float]]:
    return {f.feature: (f.psi, f.js) for f in report.features}


def test_a_fixed_distribution_against_itself_and_against_a_shift() -> None:
    tickets = _generated(4000, seed=7)
    half = np.random.default_rng(0).permutation(len(tickets)) < len(tickets) // 2
    reference, current = tickets[half], tickets[~half].copy()
    # The same languages spelt otherwise are no drift.
    current["language"] = current["language"].map({"en": "en-US", "de": "de_DE", "es": "ES"})
    report = drift_report(reference, current, heads=["urgency"])
    assert report.drifted == [], _figures(report)
    for feature in report.features:
        assert feature.psi < report.thresholds.psi and feature.js < report.thresholds.js, feature

    shifted = drift_report(reference, _generated(2000, seed=8, shift=True), heads=["urgency"])
    assert shifted.drifted == ["label:urgency", "language", "text_length", "vocabulary"], _figures(shifted)


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data is not next to the project")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_random_half_of_a_real_source_against_the_other_half(seed: int) -> None:
    params = load_params(PROJECT / "params.yaml")
    source = next(s for s in params.data.sources if s.name == "support_tickets_synthetic")
    tickets = load_tickets([source]).tickets
    half = np.random.default_rng(seed).permutation(len(tickets)) < len(tickets) // 2
    reference, current = tickets[half], tickets[~half].copy()
    current["language"] = current["language"].str.replace("en", "en-US").str.replace("de", "de_DE")
    report = drift_report(reference, current, heads=["urgency", "category", "sentiment"])
    assert [f.feature for f in report.features] == ["label:urgency", "language", "text_length", "vocabulary"]
    for feature in report.features:  # every figure below its alarm threshold
        assert feature.psi < report.thresholds.psi and feature.js < report.thresholds.js, feature

    # Shifted: only the high tickets, in French, about other things.
    shifted = current[current["urgency"] == "high"].copy()
    shifted["language"] = "fr"
    shifted["body"] = "facture remboursement abonnement paiement refusé " * 4
    report = drift_report(reference, shifted, heads=["urgency"])
    assert report.drifted == ["label:urgency", "language", "text_length", "vocabulary"]


def test_the_reference_is_the_sources_like_the_history() -> None:
    params = load_params(PROJECT / "params.yaml")
    sources = params.data.sources
    history = _generated(10, seed=1)  # urgency labels only
    canonical = history_source(
        Path("h.csv"), ["id", "subject", "body", "language", "created_at", "urgency"], params, "h"
    )
    # Not the tweets nor the topics: the urgency sources with a subject and a language column.
    assert drift_reference(sources, history, [canonical], None) == ["support_tickets_synthetic"]
    no_language = history_source(Path("h.csv"), ["subject", "body", "created_at", "urgency"], params, "h")
    assert drift_reference(sources, history, [no_language], None) == [
        "support_tickets_synthetic",
        "jira_issues_priority",
        "it_helpdesk_coded",
    ]
    jira = next(s for s in sources if s.name == "jira_issues_priority")
    assert drift_reference(sources, history, [canonical], jira) == ["jira_issues_priority"]

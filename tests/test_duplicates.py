"""Probable duplicates: the open ticket of the same requester or organisation, the threshold
chosen on labelled pairs (properties with hypothesis), and the pairs joined to the shared data."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import PROJECT, SHARED_DATA
from urgency.duplicates import (
    PAIRS_FILE,
    choose_threshold,
    duplicate_of,
    duplicates_in_batch,
    load_pairs,
    pair_similarities,
    pr_at,
    shared_field,
)
from urgency.errors import DataValidationError, InputError
from urgency.rules.schema import DuplicatesSection
from urgency.similar import SimilarIndex
from urgency.store import Store, make_engine, upgrade

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DIM = 16


def unit(vector: np.ndarray) -> np.ndarray:
    return vector / np.linalg.norm(vector)


def near(vector: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """A unit vector at exactly `cosine` to the unit `vector`."""
    other = np.random.default_rng(seed).normal(size=vector.shape)
    other = unit(other - other @ vector * vector)
    return cosine * vector + np.sqrt(1 - cosine**2) * other


@pytest.fixture
def store(tmp_path: Path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path / 'service.db'}")
    upgrade(engine)
    return Store(engine)


def scored(
    store: Store, index: SimilarIndex, ticket_id: str, vector: np.ndarray, fields: dict, **when: datetime
) -> None:
    created = when.get("created_at", NOW - timedelta(days=1))
    store.record_predictions(
        [
            {
                "ticket_id": ticket_id,
                "scored_at": created,
                "created_at": created,
                "fields": fields,
                "priority": "P2",
                "team": "desk",
                "needs_human_triage": False,
                "decision": {},
                "model_versions": {},
            }
        ]
    )
    index.add([ticket_id], vector, [created])


def state(store: Store, ticket_id: str, status: str) -> None:
    store.record_feedback({"ticket_id": ticket_id, "event_id": f"status-{status}", "status": status})


@pytest.fixture
def base() -> np.ndarray:
    return unit(np.random.default_rng(0).normal(size=DIM))


def test_the_same_requesters_open_ticket_is_the_duplicate(store: Store, base: np.ndarray) -> None:
    index = SimilarIndex("s", DIM)
    params = DuplicatesSection(threshold=0.9)
    scored(
        store, index, "T-1", near(base, 0.95, 1), {"requester": "Ann@Example.com ", "organization": "acme"}
    )
    scored(
        store, index, "T-2", near(base, 0.97, 2), {"requester": "bob@example.com"}
    )  # closer, other requester
    state(store, "T-1", "open")
    found = duplicate_of(index, store, base, {"requester": "ann@example.com"}, params, created_at=NOW)
    assert (
        found is not None
        and found.ticket_id == "T-1"
        and found.same == "requester"
        and found.status == "open"
    )
    assert found.similarity == pytest.approx(0.95, abs=2e-3)
    assert found.explanation == f"duplicate of T-1 ({found.similarity:.2f}, same requester, open)"
    assert found.as_dict()["explanation"] == found.explanation
    # Another requester of the same organisation: the organisation is named.
    other = duplicate_of(
        index, store, base, {"requester": "carl", "organization": "ACME"}, params, created_at=NOW
    )
    assert other is not None and other.ticket_id == "T-1" and other.same == "organization"
    # Nobody in common: none.
    assert duplicate_of(index, store, base, {"requester": "dora"}, params, created_at=NOW) is None
    assert duplicate_of(index, store, base, None, params, created_at=NOW) is None


def test_a_third_copy_links_to_the_first_ticket_not_the_closest_copy(store: Store, base: np.ndarray) -> None:
    index = SimilarIndex("s", DIM)
    params = DuplicatesSection(threshold=0.9)
    ann = {"requester": "ann@example.com"}
    scored(store, index, "T-1", near(base, 0.92, 1), ann, created_at=NOW - timedelta(days=3))
    scored(store, index, "T-2", near(base, 0.99, 2), ann, created_at=NOW - timedelta(days=1))
    found = duplicate_of(index, store, base, ann, params, created_at=NOW)
    assert found is not None and found.ticket_id == "T-1"
    assert found.similarity == pytest.approx(0.92, abs=2e-3)
    # The first one solved: the open copy is the one to link.
    state(store, "T-1", "solved")
    found = duplicate_of(index, store, base, ann, params, created_at=NOW)
    assert found is not None and found.ticket_id == "T-2"


def test_copies_scored_in_one_call_are_checked_against_the_calls_earlier_tickets(base: np.ndarray) -> None:
    params = DuplicatesSection(threshold=0.9)
    ann, bob = {"requester": "ann@example.com"}, {"requester": "bob@example.com"}
    vectors = np.stack([base, near(base, 0.95, 1), near(base, 0.97, 2), near(base, 0.5, 3), base])
    vectors = np.vstack([vectors, np.full(DIM, np.nan)])  # a ticket without text
    ids = ["A-1", "A-2", "B-1", "A-3", "A-1", "A-4"]
    fields = [ann, ann, bob, ann, ann, ann]
    created = [NOW] * 5 + [NOW]
    found = duplicates_in_batch(vectors, fields, ids, created, params)
    assert found[0] is None  # the first has nothing earlier
    assert found[1] is not None and found[1].ticket_id == "A-1" and found[1].same == "requester"
    assert found[1].status == "unknown" and found[1].similarity == pytest.approx(0.95, abs=2e-3)
    assert found[1].explanation == f"duplicate of A-1 ({found[1].similarity:.2f}, same requester, unknown)"
    assert found[2] is None  # another requester
    assert found[3] is None  # not similar enough
    assert found[4] is not None and found[4].ticket_id == "A-2"  # not itself (the same id again)
    assert found[5] is None  # no text, no vector
    # Created before the window of the later one: none.
    old = [NOW - timedelta(days=params.window_days + 1), NOW]
    assert duplicates_in_batch(vectors[:2], fields[:2], ids[:2], old, params) == [None, None]


def test_closed_old_dissimilar_or_itself_is_no_duplicate(store: Store, base: np.ndarray) -> None:
    index = SimilarIndex("s", DIM)
    fields = {"requester": "ann"}
    scored(store, index, "T-solved", near(base, 0.99, 1), fields)
    state(store, "T-solved", "solved")
    scored(store, index, "T-old", near(base, 0.99, 2), fields, created_at=NOW - timedelta(days=40))
    scored(store, index, "T-far", near(base, 0.8, 3), fields)
    params = DuplicatesSection(threshold=0.9, window_days=30)
    assert duplicate_of(index, store, base, fields, params, created_at=NOW) is None
    # A wider window finds the old one (scoring opened its state: new).
    wide = duplicate_of(
        index, store, base, fields, DuplicatesSection(threshold=0.9, window_days=60), created_at=NOW
    )
    assert wide is not None and wide.ticket_id == "T-old" and wide.status == "new"
    assert "new)" in wide.explanation
    # A lower threshold reaches the dissimilar one; the ticket itself is never its own duplicate.
    low = duplicate_of(index, store, base, fields, DuplicatesSection(threshold=0.75), created_at=NOW)
    assert low is not None and low.ticket_id == "T-far"
    assert (
        duplicate_of(
            index,
            store,
            near(base, 0.8, 3),
            fields,
            DuplicatesSection(threshold=0.99),
            ticket_id="T-far",
            created_at=NOW,
        )
        is None
    )
    # Resolved by an agent (feedback), without a state: not open.
    store.record_feedback({"ticket_id": "T-far", "event_id": "e", "resolved_at": NOW})
    assert duplicate_of(index, store, base, fields, DuplicatesSection(threshold=0.75), created_at=NOW) is None
    assert duplicate_of(index, store, np.full(DIM, np.nan), fields, params, created_at=NOW) is None


def test_shared_field_compares_trimmed_casefolded_values() -> None:
    names = ["requester", "organization"]
    assert shared_field({"requester": " Ann "}, {"requester": "ann"}, names) == "requester"
    assert shared_field({"requester": ""}, {"requester": ""}, names) is None  # empty is no value
    assert shared_field({"organization": 7}, {"organization": "7"}, names) == "organization"
    assert shared_field({"requester": None}, {}, names) is None
    # One person, however the helpdesk or a mail client wrote the address: composed or
    # decomposed accents, full-width letters, German sharp s, a non-breaking space around it.
    assert shared_field({"requester": "Jos\u00e9@x.es"}, {"requester": "jose\u0301@x.es"}, names)
    assert shared_field({"requester": "\uff21na@x.com"}, {"requester": "ana@x.com"}, names)
    assert shared_field({"requester": "STRASSE@x.de"}, {"requester": "stra\u00dfe@x.de"}, names)
    assert shared_field({"requester": "\u00a0ana@x.com\u00a0"}, {"requester": "ana@x.com"}, names)
    assert shared_field({"requester": "\u00a0 "}, {"requester": ""}, names) is None


# -- the threshold ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.floats(0, 1, allow_nan=False), st.booleans()), min_size=1, max_size=60),
    target=st.floats(0.5, 1.0),
)
def test_the_threshold_is_the_lowest_that_reaches_the_precision(pairs: list, target: float) -> None:
    similarities = np.array([s for s, _ in pairs])
    labels = np.array([label for _, label in pairs])
    choice = choose_threshold(similarities, labels, target)
    precision, recall = pr_at(similarities, labels, choice.threshold)
    assert (choice.precision, choice.recall) == (precision, recall)
    assert choice.positives + choice.negatives == len(pairs)
    if choice.reached:
        assert precision >= target
        for lower in np.unique(similarities[similarities < choice.threshold]):
            below, _ = pr_at(similarities, labels, float(lower))
            assert below < target
    else:
        assert all(pr_at(similarities, labels, float(t))[0] <= precision for t in np.unique(similarities))


def test_threshold_input_is_checked() -> None:
    with pytest.raises(InputError, match="as many"):
        choose_threshold([0.5], [True, False])
    with pytest.raises(InputError):
        choose_threshold([], [])
    sims = pair_similarities(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[1.0, 0.0], [1.0, 0.0]]))
    np.testing.assert_allclose(sims, [1.0, 0.0])


# -- the labelled pairs ------------------------------------------------------------------------

needs_shared_data = pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data is not here")


@needs_shared_data
def test_the_projects_pairs_join_the_shared_data() -> None:
    pairs = load_pairs(PROJECT / PAIRS_FILE, SHARED_DATA)
    assert len(pairs) == 110 and int(pairs["duplicate"].sum()) == 69
    assert (pairs["text_a"] != "").all() and (pairs["text_b"] != "").all()
    assert pairs["pair"].is_unique


@needs_shared_data
def test_a_changed_row_is_refused(tmp_path: Path) -> None:
    labels = pd.read_csv(PROJECT / PAIRS_FILE, dtype=str, keep_default_na=False)
    labels.loc[2, "sha256_b"] = "0" * 16
    changed = tmp_path / "pairs.csv"
    labels.to_csv(changed, index=False)
    with pytest.raises(DataValidationError, match=r"line 4 \(pair 3\): side b does not match"):
        load_pairs(changed, SHARED_DATA)
    labels.loc[2, "sha256_b"] = "x"
    labels.loc[0, "row_a"] = "999999"
    labels.to_csv(changed, index=False)
    with pytest.raises(DataValidationError, match="line 2: row_a 999999 is past the end"):
        load_pairs(changed, SHARED_DATA)
    labels.drop(columns=["duplicate"]).to_csv(changed, index=False)
    with pytest.raises(DataValidationError, match="missing column"):
        load_pairs(changed, SHARED_DATA)
    with pytest.raises(InputError, match="not found"):
        load_pairs(tmp_path / "none.csv", SHARED_DATA)
    empty = tmp_path / "empty-data"
    empty.mkdir()
    shutil.copy(PROJECT / PAIRS_FILE, tmp_path / "ok.csv")
    with pytest.raises(InputError, match="not found"):
        load_pairs(tmp_path / "ok.csv", empty)


def test_the_params_section_names_only_the_index(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from urgency.config import Params, SimilarParams, resolve_paths

    data = {"sources": [{"name": "s", "path": "x.csv", "columns": {"body": "body"}}]}
    assert Params.model_validate({"data": data}).similar.index is None
    params = Params.model_validate({"data": data, "similar": {"index": "data/similar.index"}})
    assert resolve_paths(params, tmp_path).similar.index == (tmp_path / "data" / "similar.index").resolve()
    # What is listed and what is a duplicate are the rules file's (`similar_tickets`, `duplicates`).
    for wrong in ({"threshold": 0.8}, {"k": 3}, {"colour": "red"}):
        with pytest.raises(ValidationError):
            SimilarParams.model_validate(wrong)


def test_the_rules_sections_defaults_are_the_measured_ones() -> None:
    defaults = DuplicatesSection()
    assert (defaults.threshold, defaults.window_days, defaults.candidates, defaults.same_agent) == (
        0.87,
        30,
        50,
        True,
    )
    assert defaults.same_fields == ["requester", "organization"]

"""`serve.repeat.KnownFacts`: the neighbours' store facts read once per call, the same answers."""

from __future__ import annotations

import numpy as np
from sqlalchemy import event

from serve.repeat import KnownFacts
from tests.test_duplicates import DIM, near, scored, store, unit  # noqa: F401 (store: a fixture)
from urgency.rules.schema import DuplicatesSection, SimilarTicketsSection
from urgency.similar import SimilarIndex
from urgency.store import Store


class Spec:
    similar_tickets = SimilarTicketsSection(k=2)
    duplicates = DuplicatesSection(candidates=3)


def test_one_read_for_the_calls_neighbours_then_only_what_is_missing(store: Store) -> None:  # noqa: F811
    base = unit(np.random.default_rng(1).normal(size=DIM))
    index = SimilarIndex("s", DIM)
    ids = [f"T-{n}" for n in range(6)]
    for n, ticket_id in enumerate(ids):
        scored(store, index, ticket_id, near(base, 0.9 + n / 100, n), {"requester": f"r{n}"})
    expected = store.ticket_facts(ids)
    vectors = np.stack([base, near(base, 0.95, 9), np.full(DIM, np.nan)])  # the last: no text
    known = KnownFacts(store, index, vectors, Spec())
    held = sorted(known.facts)  # the 4 nearest of each of the two, read at once
    assert 4 <= len(held) < len(ids) and set(held) <= set(ids)

    queries: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: queries.append(args[2]))
    assert known.ticket_facts(held[:2]) == {i: expected[i] for i in held[:2]}
    assert queries == []  # answered from the first read
    # One the first read did not hold is read then (one the store does not know is absent).
    outside = sorted(set(ids) - set(held))[0]
    assert known.ticket_facts([outside, "unknown"]) == {outside: expected[outside]}
    assert len(queries) > 0


class StrictSpec:
    similar_tickets = SimilarTicketsSection(k=1)
    duplicates = DuplicatesSection(candidates=5, threshold=0.99)


def test_reads_only_the_nearest_and_the_candidates_at_the_duplicate_threshold(store: Store) -> None:  # noqa: F811
    base = unit(np.random.default_rng(2).normal(size=DIM))
    index = SimilarIndex("s", DIM)
    for n in range(6):
        scored(store, index, f"T-{n}", near(base, 0.90 + n / 100, n), {"requester": f"r{n}"})
    scored(store, index, "COPY", near(base, 0.995, 7), {"requester": "r9"})
    known = KnownFacts(store, index, base[None, :], StrictSpec())
    nearest = [n.ticket_id for n in index.query(base, 2)[0]]
    # The 2 nearest (k + 1) and the one candidate at 0.99 or more (the copy, also the nearest).
    assert "COPY" in nearest
    assert sorted(known.facts) == sorted(nearest)

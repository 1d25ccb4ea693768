"""Similar tickets (issue 19.1): every scored ticket's sentence vector in an approximate
nearest-neighbour index, and the k most similar earlier tickets of a new one.

The vectors are the shared MiniLM encoder's, as `urgency.sentence_vectors` gives them: taken
from the process's memo, where the served MiniLM model (the text signals' model, or any
embedding / label-free / hybrid head) has just put them while predicting, so indexing a ticket
costs no second encoder pass.

The store keeps each ticket's vector (`ticket_vectors` table, `Store.record_ticket_vectors`);
the index file beside the store (`data/similar.index` next to `service.db`) is a cache:
`open_index` loads it when it matches the store and rebuilds it from the store otherwise
(`rebuild_from_store`). A file carries its encoder's scope (`vector_scope`: encoder digest, embed
settings, runtime) in its manifest, and an index never takes vectors of another scope.

The library is usearch (HNSW), chosen by `bench/bench_similar.py` (docs/repeat-issues.md):
recall@10 on real MiniLM vectors as high as hnswlib's and faiss's, removal and replacement of a
ticket (faiss's HNSW has none), a prebuilt wheel (hnswlib compiles from source), and half
precision storage at unchanged recall. Vectors are held as float16 in the index and the store alike,
so an index rebuilt from the store equals the one built ticket by ticket.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from urgency.errors import InputError, UrgencyError

if TYPE_CHECKING:
    from urgency.store import Store

log = logging.getLogger(__name__)

# The index file: MAGIC, the manifest's length (8 bytes, little-endian), the manifest (JSON),
# then usearch's own serialised index. One file, so one rename publishes it whole.
MAGIC = b"URGENCY-SIMILAR-1\n"
FORMAT = 1
INDEX_FILE = "similar.index"  # beside the store's SQLite file
# HNSW settings (bench/bench_similar.py measured these: recall@10 0.99+ on real vectors).
CONNECTIVITY = 16
EXPANSION_ADD = 100
# 128, not usearch's 64: at 1,000,000 clustered vectors recall@10 0.958 against 0.894, for
# 1.68 ms a query against 1.25 (bench/similar_1m_expansions.json, docs/repeat-issues.md).
EXPANSION_SEARCH = 128
# Nearest neighbours a filtered query (`created_after`, exclusions) examines at most.
MAX_CANDIDATES = 4096
# Up to this many tickets a query compares with every vector (usearch's exact search: about
# 1.1 ms at 10,000 against 1.0 ms through the graph, measured on the shared machine): no
# approximation while it is as cheap, and a graph worn by replaced tickets (removed nodes)
# misses no neighbour (it did: 8 of 200 small random indexes lost one of their top 10).
EXACT_UP_TO = 10_000
# The vectors' storage type, in the index and the store (`Store.record_ticket_vectors`).
VECTOR_DTYPE = np.float16


class IndexMismatch(UrgencyError):
    """An index file or vectors of another encoder scope, dimension or format."""


@dataclass(frozen=True)
class Neighbour:
    ticket_id: str
    similarity: float  # cosine, -1..1


def as_vectors(vectors: Any, ndim: int | None = None) -> np.ndarray:
    """`vectors` as a 2-d float16 array (one row per ticket) of unit length (cosine); a wrong
    shape or a non-finite or zero vector is an InputError."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or (ndim is not None and array.shape[1] != ndim):
        raise InputError(f"vectors of shape {array.shape}: expected (n, {ndim or 'dimension'})")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    bad = ~np.isfinite(array).all(axis=1) | (norms[:, 0] == 0)
    if bad.any():
        raise InputError(f"vector row(s) {np.flatnonzero(bad)[:5].tolist()}: not finite or zero")
    return (array / norms).astype(VECTOR_DTYPE)


def _timestamp(value: datetime | None) -> float:
    if value is None:
        return float("nan")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # the store's SQLite reads times back without a zone
    return value.timestamp()


class SimilarIndex:
    """Tickets' sentence vectors by ticket id, searchable by cosine similarity.

    One vector per ticket id: adding an id again replaces its vector. Ids are strings (the
    store's ticket ids); usearch's integer keys are this index's own business."""

    def __init__(self, scope: str, ndim: int) -> None:
        from usearch.index import Index

        self.scope = scope
        self.ndim = int(ndim)
        self._index = Index(
            ndim=self.ndim,
            metric="cos",
            dtype="f16",
            connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD,
            expansion_search=EXPANSION_SEARCH,
        )
        self._keys: dict[str, int] = {}  # ticket id -> usearch key
        self._ids: dict[int, str] = {}
        self._created: dict[int, float] = {}  # key -> created_at (POSIX seconds, NaN unknown)
        self._next_key = 0
        # The newest store time this index has taken vectors up to (`catch_up` reads from there).
        self.synced_at: datetime | None = None
        # Each recent ticket's store time as this index last read or wrote its vector: a catch-up
        # reads the last seconds again (`QUICK_CATCH_UP_MARGIN`), and a row seen at the same
        # store time is skipped without fetching its indexed vector to compare (in memory only;
        # after a load the first catch-up compares). Pruned to the catch-up's reach.
        self.stored_at: dict[str, datetime] = {}
        self._stored_at_pruned = 0  # its size after the last pruning
        # Writers one at a time (the service scores in threads); searches need no lock: usearch
        # searches while it adds, and a key removed meanwhile is skipped (`_one`).
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, ticket_id: object) -> bool:
        return ticket_id in self._keys

    @property
    def ids(self) -> list[str]:
        return list(self._keys)

    def add(
        self,
        ids: Sequence[str],
        vectors: Any,
        created_at: Sequence[datetime | None] | None = None,
        *,
        scope: str | None = None,
    ) -> None:
        """Index `vectors` (n x ndim) under `ids`; an id already indexed is replaced. `scope`,
        when given, must be the index's (vectors of another encoder never mix in)."""
        if scope is not None and scope != self.scope:
            raise IndexMismatch(f"vectors of encoder scope {scope!r} offered to an index of {self.scope!r}")
        ids = [str(ticket_id) for ticket_id in ids]
        array = as_vectors(vectors, self.ndim)
        if len(array) != len(ids):
            raise InputError(f"{len(ids)} ticket id(s) for {len(array)} vector(s)")
        if len(set(ids)) != len(ids):
            raise InputError("a ticket id appears twice in one add")
        created = list(created_at) if created_at is not None else [None] * len(ids)
        if len(created) != len(ids):
            raise InputError(f"{len(ids)} ticket id(s) for {len(created)} created_at value(s)")
        if not ids:
            return
        with self._lock:
            self.remove([ticket_id for ticket_id in ids if ticket_id in self._keys])
            keys = np.arange(self._next_key, self._next_key + len(ids), dtype=np.uint64)
            self._next_key += len(ids)
            self._index.add(keys, array, threads=0)
            for key, ticket_id, when in zip(keys.tolist(), ids, created, strict=True):
                self._keys[ticket_id] = key
                self._ids[key] = ticket_id
                self._created[key] = _timestamp(when)

    def remove(self, ids: Iterable[str]) -> int:
        """Drop these tickets (unknown ids are ignored); returns how many were indexed."""
        with self._lock:
            keys = [self._keys.pop(str(ticket_id)) for ticket_id in ids if str(ticket_id) in self._keys]
            if keys:
                for key in keys:
                    del self._ids[key]
                    del self._created[key]
                self._index.remove(np.asarray(keys, dtype=np.uint64))
            return len(keys)

    def created_at(self, ticket_id: str) -> float:
        """A ticket's created time (POSIX seconds; NaN unknown or not indexed)."""
        key = self._keys.get(ticket_id)
        return float("nan") if key is None else self._created.get(key, float("nan"))

    def vector(self, ticket_id: str) -> np.ndarray | None:
        """The indexed (float16, unit) vector of a ticket, else None."""
        key = self._keys.get(ticket_id)
        return None if key is None else np.asarray(self._index.get(key), dtype=VECTOR_DTYPE)

    def query(
        self,
        vectors: Any,
        k: int,
        *,
        exclude_ids: Iterable[str] = (),
        created_after: datetime | None = None,
    ) -> list[list[Neighbour]]:
        """Per query vector, its at most `k` most similar indexed tickets, most similar first,
        without `exclude_ids` (the ticket itself) and, with `created_after`, only tickets created
        after it (a ticket whose time is unknown is left out then)."""
        if k < 0:
            raise InputError(f"k={k}: expected 0 or more")
        array = as_vectors(vectors, self.ndim)
        excluded = {self._keys[str(i)] for i in exclude_ids if str(i) in self._keys}
        after = _timestamp(created_after) if created_after is not None else None
        results: list[list[Neighbour]] = []
        for row in array:
            results.append(self._one(row, k, excluded, after) if k and len(self) else [])
        return results

    def _one(self, vector: np.ndarray, k: int, excluded: set[int], after: float | None) -> list[Neighbour]:
        # Ask for more than k when some are filtered out, widening until k pass, all were seen or
        # MAX_CANDIDATES were (a window whose close neighbours are all older finds fewer than k).
        wanted = k + len(excluded)
        while True:
            count = min(
                len(self), wanted if after is None else max(wanted, 4 * k), max(MAX_CANDIDATES, wanted)
            )
            matches = self._index.search(vector, count, threads=1, exact=len(self) <= EXACT_UP_TO)
            found = []
            for key, distance in zip(matches.keys.tolist(), matches.distances.tolist(), strict=True):
                ticket_id = self._ids.get(key)  # None: removed meanwhile (or padding)
                if key in excluded or ticket_id is None:
                    continue
                if after is not None and not self._created.get(key, np.nan) > after:
                    continue
                found.append(Neighbour(ticket_id, round(1.0 - float(distance), 6)))
                if len(found) == k:
                    return found
            if count >= min(len(self), max(MAX_CANDIDATES, wanted)):
                return found
            wanted = count * 4

    # -- files ---------------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        keys = list(self._ids)
        return {
            "synced_at": self.synced_at.isoformat() if self.synced_at else None,
            "format": FORMAT,
            "library": "usearch",
            "scope": self.scope,
            "ndim": self.ndim,
            "dtype": "float16",
            "count": len(self),
            "next_key": self._next_key,
            "keys": keys,
            "ids": [self._ids[key] for key in keys],
            "created_at": [None if np.isnan(self._created[key]) else self._created[key] for key in keys],
        }

    def save(self, path: Path) -> Path:
        """Write the index to `path` atomically: a temporary file in its folder, then a rename
        (a reader sees the old file or the new one, never half of one)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            serialised = bytes(self._index.save())
            # The checksum lets `load` refuse a damaged file before usearch reads its graph.
            manifest = json.dumps({**self.manifest(), "sha256": hashlib.sha256(serialised).hexdigest()})
            manifest = manifest.encode("utf-8")
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.chmod(temporary, 0o644)  # as the store's own file (mkstemp makes it 0600)
            with os.fdopen(handle, "wb") as file:
                file.write(MAGIC)
                file.write(struct.pack("<Q", len(manifest)))
                file.write(manifest)
                file.write(serialised)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        remove_stale_temporaries(path)
        return path

    @classmethod
    def load(cls, path: Path, *, scope: str | None = None) -> SimilarIndex:
        """The index saved at `path`; with `scope`, one of another scope is an IndexMismatch, and
        so is a damaged file (truncated, its checksum or manifest wrong): the caller rebuilds."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{path}: no similar-tickets index there") from None
        except OSError as error:
            raise InputError(f"{path}: cannot read the similar-tickets index: {error.strerror}") from None
        if not data.startswith(MAGIC):
            raise IndexMismatch(f"{path}: not a similar-tickets index file")
        try:
            return cls._parse(path, data, scope)
        except (IndexMismatch, InputError):
            raise
        except Exception as error:  # struct, JSON, a manifest's missing key, usearch's own error
            raise IndexMismatch(
                f"{path}: damaged similar-tickets index ({type(error).__name__}: {error})"
            ) from None

    @classmethod
    def _parse(cls, path: Path, data: bytes, scope: str | None) -> SimilarIndex:
        from usearch.index import Index

        start = len(MAGIC) + 8
        if len(data) < start:
            raise IndexMismatch(f"{path}: truncated ({len(data)} bytes)")
        (length,) = struct.unpack("<Q", data[len(MAGIC) : start])
        try:
            manifest = json.loads(data[start : start + length])
        except ValueError:
            raise IndexMismatch(f"{path}: its manifest is not valid JSON") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise IndexMismatch(f"{path}: index format {found!r}, this version reads {FORMAT}")
        if scope is not None and manifest["scope"] != scope:
            raise IndexMismatch(f"{path}: vectors of encoder scope {manifest['scope']!r}, not {scope!r}")
        # A view of the file's bytes, not a copy: at 1,000,000 tickets each copy is 0.9 GB.
        serialised = memoryview(data)[start + length :]
        checksum = manifest.get("sha256")  # files written before the checksum have none
        if checksum is not None and hashlib.sha256(serialised).hexdigest() != checksum:
            raise IndexMismatch(f"{path}: damaged (its checksum does not match; truncated or overwritten)")
        index = cls(manifest["scope"], manifest["ndim"])
        index._index = Index.restore(serialised)
        if index._index is None or len(index._index) != manifest["count"]:
            raise IndexMismatch(f"{path}: the index holds another count than its manifest says")
        if int(index._index.ndim) != index.ndim:
            raise IndexMismatch(
                f"{path}: vectors of {index._index.ndim} dimensions, its manifest says {index.ndim}"
            )
        for key, ticket_id, when in zip(
            manifest["keys"], manifest["ids"], manifest["created_at"], strict=True
        ):
            index._keys[str(ticket_id)] = key
            index._ids[key] = str(ticket_id)
            index._created[key] = float("nan") if when is None else float(when)
        index._next_key = manifest["next_key"]
        synced = manifest.get("synced_at")
        index.synced_at = datetime.fromisoformat(synced) if synced else None
        return index


class PrefetchedIndex:
    """A call's nearest neighbours, searched once per ticket: `query` answers the call's own
    vectors from that list with its filters applied (exclusions, `created_after`), as
    `SimilarIndex.query` would. The service's similar tickets, duplicate check and neighbours'
    facts each searched the index for every ticket (three exact searches of 0.7 ms each at 5,000
    tickets); now one does. A vector not prefetched, or a query whose filters leave fewer than
    `k` of a list that was cut at `depth`, is searched in the index itself."""

    def __init__(self, index: SimilarIndex, vectors: Any, depth: int) -> None:
        self.index = index
        self.ndim = index.ndim
        self.depth = depth
        self._found: dict[bytes, list[Neighbour]] = {}
        rows = [row for row in np.asarray(vectors, dtype=np.float32) if np.isfinite(row).all()]
        if rows and depth and len(index):
            array = as_vectors(np.asarray(rows), index.ndim)
            for row, found in zip(array, index.query(array, depth), strict=True):
                self._found[row.tobytes()] = found

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, ticket_id: object) -> bool:
        return ticket_id in self.index

    def query(
        self,
        vectors: Any,
        k: int,
        *,
        exclude_ids: Iterable[str] = (),
        created_after: datetime | None = None,
    ) -> list[list[Neighbour]]:
        excluded = {str(ticket_id) for ticket_id in exclude_ids}
        after = _timestamp(created_after) if created_after is not None else None
        results = []
        for row in as_vectors(vectors, self.ndim):
            found = self._found.get(row.tobytes())
            if found is not None:
                kept = [
                    neighbour
                    for neighbour in found
                    if neighbour.ticket_id not in excluded
                    and (after is None or self.index.created_at(neighbour.ticket_id) > after)
                ][:k]
                # Fewer than `depth` found: the index had no more, the list is whole.
                if len(kept) == k or len(found) < self.depth:
                    results.append(kept)
                    continue
            results.append(self.index.query(row, k, exclude_ids=excluded, created_after=created_after)[0])
        return results


# ---------------------------------------------------------------------------------------------
# Vectors of scored tickets, and the index beside the store


def index_path(database_url: str) -> Path | None:
    """Where the index beside the store lives: `similar.index` in the SQLite file's folder; None
    for a server database (the caller names a path: params or a service setting)."""
    from urgency.store import sqlite_path

    path = sqlite_path(database_url)
    return None if path is None else path.parent / INDEX_FILE


def rebuild_from_store(store: Store, scope: str, *, batch_size: int = 10_000) -> SimilarIndex | None:
    """A new index of every vector the store keeps under `scope`; None when it keeps none (the
    dimension is then unknown)."""
    index: SimilarIndex | None = None
    for ids, vectors, created, stored in store.ticket_vector_batches(scope, batch_size=batch_size):
        if index is None:
            index = SimilarIndex(scope, vectors.shape[1])
        index.add(ids, vectors, created)
        index.synced_at = max(stored)
    return index


# How far before `synced_at` a catch-up reads again: a worker's transaction that stamped its rows
# earlier but committed later than the newest row read is still found.
CATCH_UP_MARGIN = timedelta(minutes=2)
# The look-back of a quick catch-up before each duplicate check (a copy sent a second after the
# original to another worker): a few seconds of rows; a commit later than that after its stamp
# is found by the next full catch-up (`CATCH_UP_MARGIN`).
QUICK_CATCH_UP_MARGIN = timedelta(seconds=10)


def catch_up(
    index: SimilarIndex, store: Store, *, batch_size: int = 10_000, margin: timedelta = CATCH_UP_MARGIN
) -> int:
    """Add to `index` the vectors the store took since the index last read it (`synced_at`,
    less `margin`): those another worker process of the service stored. A vector the index
    already holds unchanged is skipped. Returns how many were added or replaced."""
    added = 0
    since = None if index.synced_at is None else index.synced_at - margin
    seen = index.stored_at
    for ids, vectors, created, stored in store.ticket_vector_batches(
        index.scope, batch_size=batch_size, since=since
    ):
        new = [
            row
            for row, ticket_id in enumerate(ids)
            if seen.get(ticket_id) != stored[row]
            and (ticket_id not in index or not np.array_equal(index.vector(ticket_id), vectors[row]))
        ]
        if new:
            index.add([ids[row] for row in new], vectors[new], [created[row] for row in new])
        seen.update(zip(ids, stored, strict=True))
        index.synced_at = max(stored) if index.synced_at is None else max(index.synced_at, *stored)
        added += len(new)
    _forget_unreachable(index)
    return added


# How many store times an index keeps before dropping those no catch-up reads again.
STORED_AT_KEPT = 20_000


def _forget_unreachable(index: SimilarIndex) -> None:
    """Drop the store times older than any catch-up reads; only once they doubled since the
    last time (a busy minute may keep more than `STORED_AT_KEPT` within reach)."""
    if len(index.stored_at) > max(STORED_AT_KEPT, 2 * index._stored_at_pruned) and index.synced_at:
        reach = index.synced_at - CATCH_UP_MARGIN
        index.stored_at = {key: when for key, when in index.stored_at.items() if when >= reach}
        index._stored_at_pruned = len(index.stored_at)


def open_index(path: Path, store: Store, scope: str, ndim: int) -> SimilarIndex:
    """The index at `path` when it is of `scope` and `ndim`, caught up with the store
    (`catch_up`) and then holding exactly the store's tickets of that scope; else rebuilt from
    the store (logged with the reason: a damaged file, another encoder). Saved again when it
    changed; a file that cannot be written (read-only folder, full disk) is logged and the index
    kept in memory: the store holds the vectors, so nothing is lost. Empty when the store has none."""
    try:
        index = SimilarIndex.load(path, scope=scope)
        if index.ndim != ndim:
            raise IndexMismatch(f"{path}: vectors of {index.ndim} dimensions, the encoder gives {ndim}")
        changed = catch_up(index, store)
        if set(index.ids) == set(store.ticket_vector_ids(scope)):
            if changed:
                save_index(index, path)
            return index
        log.warning("similar-tickets index %s differs from the store's vectors: rebuilding it", path)
    except IndexMismatch as error:
        log.warning("similar-tickets index: %s; rebuilding it from the store", error)
    except InputError as error:
        if Path(path).exists():  # none yet is the usual first start: nothing to say
            log.warning("similar-tickets index: %s; rebuilding it from the store", error)
    index = rebuild_from_store(store, scope) or SimilarIndex(scope, ndim)
    save_index(index, path)
    return index


# A temporary file older than this is a save that was killed (another worker's save in progress
# is seconds old): the next save removes it.
STALE_TEMPORARY = timedelta(minutes=30)


def remove_stale_temporaries(path: Path) -> int:
    """Remove the temporary files of saves of `path` killed half-way (`kill -9` during `save`)."""
    removed = 0
    cutoff = time.time() - STALE_TEMPORARY.total_seconds()
    for temporary in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if temporary.stat().st_mtime < cutoff:
                temporary.unlink()
                removed += 1
        except OSError:  # gone meanwhile (another worker removed it), or not ours to remove
            continue
    return removed


def save_index(index: SimilarIndex, path: Path) -> bool:
    """`index.save(path)`, logging instead of raising when the file cannot be written (the
    index is a cache of the store: the next start rebuilds or catches up). False then."""
    try:
        index.save(path)
    except OSError as error:
        log.error("similar-tickets index: cannot write %s (%s): kept in memory only", path, error)
        return False
    return True


def record_scored(
    index: SimilarIndex,
    store: Store,
    ids: Sequence[str],
    vectors: np.ndarray,
    created_at: Sequence[datetime | None],
) -> int:
    """Keep scored tickets' vectors: in the store (the truth) and the index (its cache). Rows
    whose vector is NaN (no text) are skipped; a ticket id given twice (a batch that carries a
    ticket twice) keeps its last vector, as a ticket scored again does. Returns how many were kept."""
    last = {str(ticket_id): row for row, ticket_id in enumerate(ids) if np.isfinite(vectors[row]).all()}
    keep = sorted(last.values())
    if not keep:
        return 0
    kept_ids = [str(ids[row]) for row in keep]
    kept = as_vectors(vectors[keep], index.ndim)
    when = [created_at[row] for row in keep]
    stored_at = datetime.now(UTC)
    store.record_ticket_vectors(kept_ids, index.scope, kept, when, stored_at=stored_at)
    index.add(kept_ids, kept, when)
    index.stored_at.update(dict.fromkeys(kept_ids, stored_at))
    return len(keep)


# ---------------------------------------------------------------------------------------------
# What the score response lists


@dataclass(frozen=True)
class SimilarTicket:
    ticket_id: str
    similarity: float
    category: str | None  # the agents' final value when they set one, else the model's
    priority: str | None
    status: str | None  # the ticket's latest state (`ticket_states`), None: unknown
    resolved_at: datetime | None
    decided_by: str  # "agent": category / priority are the agents' final values; "model"; "none"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "similarity": self.similarity,
            "category": self.category,
            "priority": self.priority,
            "status": self.status,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "decided_by": self.decided_by,
        }


def similar_tickets(
    index: SimilarIndex | PrefetchedIndex,
    store: Store,
    vector: Any,
    k: int,
    *,
    exclude_ids: Iterable[str] = (),
    created_after: datetime | None = None,
) -> list[SimilarTicket]:
    """The `k` indexed tickets most similar to `vector`, most similar first, each with what the
    store knows of it: final category and priority (the agents' when they decided, else the
    model's last), status and resolution time. A NaN vector (no text) has none."""
    if not np.isfinite(np.asarray(vector, dtype=np.float32)).all():
        return []
    found = index.query(vector, k, exclude_ids=exclude_ids, created_after=created_after)[0]
    facts = store.ticket_facts([neighbour.ticket_id for neighbour in found])
    out = []
    for neighbour in found:
        fact = facts.get(neighbour.ticket_id, {})
        agent = fact.get("agent_category") is not None or fact.get("agent_priority") is not None
        out.append(
            SimilarTicket(
                ticket_id=neighbour.ticket_id,
                similarity=neighbour.similarity,
                category=fact.get("agent_category") or fact.get("category"),
                priority=fact.get("agent_priority") or fact.get("priority"),
                status=fact.get("status"),
                resolved_at=fact.get("resolved_at"),
                decided_by="agent" if agent else "model" if fact else "none",
            )
        )
    return out

"""Which approximate-nearest-neighbour library indexes the tickets' sentence vectors (issue 19.1).

usearch, hnswlib and faiss-cpu (HNSW), each with the same graph settings (M / connectivity 16,
expansion 100 when adding, 64 when searching, cosine on 384-d float32 unit vectors), beside the
anchor: exact search with numpy (one matrix-vector product, `argpartition` for the top k).

Two kinds of vectors:
- real: MiniLM (all-MiniLM-L6-v2, max_length 128, normalised) vectors of the shared support and
  Jira tickets (7,364: `--real FILE.npy`, else embedded here, a minute or two); 500 of them held
  out as queries, recall@10 against the exact top 10 of the rest.
- clustered: random but clustered unit vectors (unit centres, each point its centre plus
  N(0, 0.05) noise per dimension, ~50 points per centre, normalised: a point's cosine to its
  centre is about 0.7, to its cluster's other points about 0.5, as close as real tickets'
  neighbours), to scale to 10k, 100k, 1M; queries are fresh points of the same clusters.

Per library and size, in a fresh process (so the RSS delta is that library's alone): build time
(vectors added with 2 threads; wall and CPU seconds: the machine is shared, so the
load average is printed beside them), RSS delta of the build, the saved index's bytes, single-query
latency p50 / p99 (one thread, one query at a time as the service asks), recall@10.

    PYTHONPATH=src python bench/bench_similar.py --sizes 10000,100000 [--real vectors.npy]
    PYTHONPATH=src python bench/bench_similar.py --sizes 1000000 --libraries numpy,usearch-f16 --budget 600

Prints a table (and `--json FILE` writes the rows). Only usearch is a project dependency; to
measure the others, install them beside it without touching the venv, e.g.
`pip install --target /tmp/annlibs hnswlib==0.8.0 faiss-cpu==1.15.1` and `PYTHONPATH=/tmp/annlibs:src`
(a library that is not installed is reported as failed and left out of the table).

The service's own index at scale (`--similar-index`): one `urgency.similar.SimilarIndex` (usearch
f16, the settings above) built to the largest of `--sizes` in blocks of 50,000 (the index's own
`add`: all cores, 2 here), measured at each size on the way (the clusters are drawn for the
largest size, so a smaller checkpoint has fewer points per cluster). Per checkpoint: build
wall / CPU seconds and vectors per second, process RSS (absolute, and its growth since the
vectors were generated: the index with its ids and times), usearch's own `memory_usage`, the
saved file (`SimilarIndex.save`), k=10 query p50 / p99 through `SimilarIndex.query` without and
with `created_after` (tickets arrive at a constant rate over a year, `created_after` is 30 days
before the newest: the service's default window), recall@10 of each against the exact (filtered)
top 10 (numpy, in chunks of 100,000 rows), exact numpy search's own latency (the anchor), and in a
fresh process the time and RSS of `SimilarIndex.load` and of mapping the same file's usearch part
with `Index.restore(..., view=True)` (memory-mapped, not read). `--keep DIR` keeps the saved
index files there; `--expansions FILE SIZE BUILT` then measures recall@10 and latency of one at
search expansions 32-512 (the service searches with 64).

    PYTHONPATH=src nice -n 10 python bench/bench_similar.py --similar-index --sizes 500000,1000000 \
        --queries 200 --keep /tmp/similar --json bench/similar_1m.json
    PYTHONPATH=src nice -n 10 python bench/bench_similar.py --queries 200 --json \
        bench/similar_1m_expansions.json --expansions /tmp/similar/similar-1000000.index 1000000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 384
K = 10
M = 16
EF_ADD = 100
EF_SEARCH = 64
# Each measured process: 2 threads for building; every allocation over 128 kB its own mapping, so
# memory freed before the build is returned to the system and the RSS delta is the index's.
ENV = {**os.environ, "OMP_NUM_THREADS": "2", "MALLOC_MMAP_THRESHOLD_": "131072"}
BLOCK = 50_000
LIBRARIES = ("numpy", "usearch", "usearch-f16", "hnswlib", "faiss")


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def clustered(n: int, seed: int, centres: np.ndarray) -> np.ndarray:
    """n unit vectors, each a random centre plus noise (chunked: 1M rows never hold two copies)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        picks = rng.integers(0, len(centres), stop - start)
        block = centres[picks] + rng.normal(0, 0.05, (stop - start, DIM)).astype(np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def dataset(kind: str, size: int, queries: int, real: Path | None) -> tuple[np.ndarray, np.ndarray]:
    if kind == "real":
        vectors = np.load(real).astype(np.float32)
        order = np.random.default_rng(0).permutation(len(vectors))
        return vectors[order[queries:]], vectors[order[:queries]]
    centres = np.random.default_rng(1).normal(0, 1, (max(1, size // 50), DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return clustered(size, 2, centres), clustered(queries, 3, centres)


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The exact top-k row numbers (by inner product = cosine on unit vectors), best first."""
    tops = []
    for start in range(0, len(queries), 100):
        scores = queries[start : start + 100] @ data.T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        ordered = np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, 1), 1), 1)
        tops.append(ordered)
    return np.vstack(tops)


class Numpy:
    def start(self, capacity: int) -> None:
        self.parts: list[np.ndarray] = []

    def add(self, first: int, block: np.ndarray) -> None:
        self.parts.append(block)

    def finish(self) -> None:
        self.data = np.vstack(self.parts) if len(self.parts) > 1 else self.parts[0]
        self.parts = []

    def query(self, vector: np.ndarray, k: int) -> np.ndarray:
        scores = self.data @ vector
        part = np.argpartition(-scores, k)[:k]
        return part[np.argsort(-scores[part])]

    def save(self, path: str) -> None:
        np.save(path, self.data)


class Usearch:
    def __init__(self, dtype: str = "f32") -> None:
        self.dtype = dtype

    def start(self, capacity: int) -> None:
        from usearch.index import Index

        self.index = Index(
            ndim=DIM,
            metric="cos",
            dtype=self.dtype,
            connectivity=M,
            expansion_add=EF_ADD,
            expansion_search=EF_SEARCH,
        )

    def add(self, first: int, block: np.ndarray) -> None:
        self.index.add(np.arange(first, first + len(block), dtype=np.uint64), block, threads=2)

    def finish(self) -> None:
        pass

    def query(self, vector: np.ndarray, k: int) -> np.ndarray:
        return np.asarray(self.index.search(vector, k, threads=1).keys)

    def save(self, path: str) -> None:
        self.index.save(path)


class Hnswlib:
    def start(self, capacity: int) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="cosine", dim=DIM)
        self.index.init_index(max_elements=capacity, M=M, ef_construction=EF_ADD)

    def add(self, first: int, block: np.ndarray) -> None:
        self.index.add_items(block, np.arange(first, first + len(block)), num_threads=2)

    def finish(self) -> None:
        self.index.set_ef(EF_SEARCH)
        self.index.set_num_threads(1)

    def query(self, vector: np.ndarray, k: int) -> np.ndarray:
        labels, _ = self.index.knn_query(vector, k=k)
        return labels[0]

    def save(self, path: str) -> None:
        self.index.save_index(path)


class Faiss:
    def start(self, capacity: int) -> None:
        import faiss

        faiss.omp_set_num_threads(2)
        self.index = faiss.IndexHNSWFlat(DIM, M, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = EF_ADD

    def add(self, first: int, block: np.ndarray) -> None:
        self.index.add(block)

    def finish(self) -> None:
        import faiss

        self.index.hnsw.efSearch = EF_SEARCH
        faiss.omp_set_num_threads(1)

    def query(self, vector: np.ndarray, k: int) -> np.ndarray:
        _, labels = self.index.search(vector[None, :], k)
        return labels[0]

    def save(self, path: str) -> None:
        import faiss

        faiss.write_index(self.index, path)


def make(library: str):
    return {
        "numpy": Numpy,
        "usearch": Usearch,
        "usearch-f16": lambda: Usearch("f16"),
        "hnswlib": Hnswlib,
        "faiss": Faiss,
    }[library]()


def run_one(
    library: str, kind: str, size: int, queries: int, real: Path | None, budget: float | None
) -> dict:
    """One library on one data set, measured in this process. With a `budget` (seconds of
    building), vectors are added in blocks of 50,000 until it is spent: the row then says how
    many were indexed, and every figure is of that many."""
    from threadpoolctl import threadpool_limits

    data, query_vectors = dataset(kind, size, queries, real)
    index = make(library)
    before = rss_bytes()
    started, cpu_started = time.perf_counter(), time.process_time()
    index.start(len(data))
    built = 0
    while built < len(data) and (budget is None or time.perf_counter() - started < budget):
        block = data[built : built + BLOCK]
        index.add(built, block)
        built += len(block)
    index.finish()
    build_seconds, build_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    data = data[:built]
    rss_delta = rss_bytes() - before
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "index.npy" if library == "numpy" else "index.bin")
        index.save(path)
        index_bytes = os.path.getsize(path)
    # After the build, so the RSS delta counts no freed scratch memory the build could reuse.
    truth = exact_top(data, query_vectors, K)
    # The exact search's anchor is slow at 1M: its latency from fewer queries.
    timed = query_vectors if library != "numpy" or len(data) < 200_000 else query_vectors[:100]
    latencies, hits = [], 0
    with threadpool_limits(1):  # numpy's BLAS on one thread too, as every library queries
        for row, vector in enumerate(timed):
            started = time.perf_counter_ns()
            found = index.query(vector, K)
            latencies.append((time.perf_counter_ns() - started) / 1e6)
            hits += len(set(found.tolist()) & set(truth[row].tolist()))
    return {
        "library": library,
        "vectors": f"{kind} {len(data):,}" + (f" (of {size:,}: build budget spent)" if built < size else ""),
        "build_s": round(build_seconds, 2),
        "build_cpu_s": round(build_cpu, 2),
        "rss_delta_mb": round(rss_delta / 2**20, 1) if library != "numpy" else 0.0,
        "index_mb": round(index_bytes / 2**20, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p99_ms": round(float(np.percentile(latencies, 99)), 3),
        "recall_at_10": round(hits / (K * len(timed)), 4),
        "queries": len(timed),
        "load_1min": round(os.getloadavg()[0], 1),
    }


# -- the service's index (SimilarIndex) at scale -------------------------------------------------

YEAR_SECONDS = 365 * 86400.0
WINDOW_SECONDS = 30 * 86400.0  # params similar.window_days default


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def centres_for(size: int) -> np.ndarray:
    """The clusters' unit centres of `dataset`'s clustered vectors (~50 points per centre)."""
    centres = np.random.default_rng(1).normal(0, 1, (max(1, size // 50), DIM)).astype(np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def exact_top_chunked(
    data: np.ndarray, queries: np.ndarray, k: int, first_allowed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-k row numbers among rows `first_allowed`.. (later rows are newer tickets)
    and their cosines, best first, scanning 100,000 rows at a time so memory stays bounded."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.full((len(queries), k), -1, dtype=np.int64)
    for start in range(first_allowed, len(data), 100_000):
        stop = min(len(data), start + 100_000)
        scores = np.hstack([best_scores, queries @ data[start:stop].T])
        rows = np.hstack([best_rows, np.broadcast_to(np.arange(start, stop), (len(queries), stop - start))])
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        best_scores = np.take_along_axis(scores, part, 1)
        best_rows = np.take_along_axis(rows, part, 1)
    order = np.argsort(-best_scores, axis=1)
    return np.take_along_axis(best_rows, order, 1), np.take_along_axis(best_scores, order, 1)


def created_times(rows: np.ndarray, size: int):
    """Ticket creation times: a constant arrival rate, `size` tickets over a year."""
    from datetime import UTC, datetime, timedelta

    start = datetime(2025, 1, 1, tzinfo=UTC)
    return [start + timedelta(seconds=float(row) * YEAR_SECONDS / size) for row in rows]


def timed_queries(search, query_vectors: np.ndarray) -> tuple[list[float], list[list[int]]]:
    latencies, found = [], []
    for vector in query_vectors:
        started = time.perf_counter_ns()
        keys = search(vector)
        latencies.append((time.perf_counter_ns() - started) / 1e6)
        found.append(keys)
    return latencies, found


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    hits = sum(len(set(keys) & set(row.tolist())) for keys, row in zip(found, truth, strict=True))
    return round(hits / (K * len(truth)), 4)


# Cluster mates are at cosine ~0.5, other clusters' points at noise level (below ~0.25 at 1M): the
# exact top 10 beyond a query's cluster mates is noise no index is expected to rank alike.
CLOSE = 0.3


def close_recall(found: list[list[int]], truth: np.ndarray, scores: np.ndarray) -> float | None:
    """Recall of the exact top-10 neighbours at cosine CLOSE or more (the query's cluster mates)."""
    wanted = [set(row[score >= CLOSE].tolist()) for row, score in zip(truth, scores, strict=True)]
    total = sum(len(rows) for rows in wanted)
    hits = sum(len(set(keys) & rows) for keys, rows in zip(found, wanted, strict=True))
    return round(hits / total, 4) if total else None


def percentiles(latencies: list[float]) -> tuple[float, float]:
    return (
        round(float(np.percentile(latencies, 50)), 3),
        round(float(np.percentile(latencies, 99)), 3),
    )


def measure_load(path: str, size: int, built: int, queries: int) -> dict:
    """In this (fresh) process: load the saved index as the service does, query it; then map the
    same file's usearch part read-only (`view`) and query that."""
    import mmap
    import struct

    from usearch.index import Index

    from urgency.similar import MAGIC, SimilarIndex

    query_vectors = clustered(queries, 3, centres_for(size))  # the builder's queries, not its data
    base = rss_bytes()
    started = time.perf_counter()
    index = SimilarIndex.load(Path(path))
    load_seconds = time.perf_counter() - started
    loaded_rss, loaded_peak = rss_bytes(), peak_rss_bytes()
    assert len(index) == built
    latencies, _ = timed_queries(lambda v: [n.ticket_id for n in index.query(v, K)[0]], query_vectors)
    load_p50, load_p99 = percentiles(latencies)
    index = None  # freed before the view is measured
    import gc

    gc.collect()
    before_view = rss_bytes()
    started = time.perf_counter()
    with open(path, "rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    head = len(MAGIC) + 8
    (length,) = struct.unpack("<Q", mapped[len(MAGIC) : head])
    view = Index.restore(memoryview(mapped)[head + length :], view=True)
    view_seconds = time.perf_counter() - started
    view_rss = rss_bytes()
    assert view is not None and len(view) == built
    latencies, _ = timed_queries(lambda v: view.search(v, K, threads=1).keys.tolist(), query_vectors)
    view_p50, view_p99 = percentiles(latencies)
    return {
        "rss_before_load_mb": round(base / 2**20, 1),
        "load_s": round(load_seconds, 2),
        "rss_after_load_mb": round(loaded_rss / 2**20, 1),
        "peak_rss_during_load_mb": round(loaded_peak / 2**20, 1),
        "loaded_p50_ms": load_p50,
        "loaded_p99_ms": load_p99,
        "view_s": round(view_seconds, 3),
        "rss_view_growth_mb": round((view_rss - before_view) / 2**20, 1),
        "rss_after_view_queries_mb": round(rss_bytes() / 2**20, 1),
        "view_p50_ms": view_p50,
        "view_p99_ms": view_p99,
    }


def measure_expansions(path: str, size: int, built: int, queries: int, expansions: list[int]) -> list[dict]:
    """Recall@10 and latency of the saved index's usearch part (mapped read-only) at each search
    expansion (`EXPANSION_SEARCH` is 64): what raising it would buy. The data is drawn again (the
    same seeds) for the exact top 10."""
    import mmap
    import struct

    from threadpoolctl import threadpool_limits
    from usearch.index import Index

    from urgency.similar import MAGIC

    centres = centres_for(size)
    data, query_vectors = clustered(size, 2, centres)[:built], clustered(queries, 3, centres)
    truth, truth_scores = exact_top_chunked(data, query_vectors, K)
    del data
    with open(path, "rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    head = len(MAGIC) + 8
    (length,) = struct.unpack("<Q", mapped[len(MAGIC) : head])
    view = Index.restore(memoryview(mapped)[head + length :], view=True)
    rows = []
    with threadpool_limits(1):
        for expansion in expansions:
            view.expansion_search = expansion
            timed_queries(lambda v: view.search(v, K, threads=1).keys.tolist(), query_vectors[:20])  # warm
            latencies, found = timed_queries(
                lambda v: view.search(v, K, threads=1).keys.tolist(), query_vectors
            )
            p50, p99 = percentiles(latencies)
            rows.append(
                {
                    "vectors": built,
                    "expansion_search": expansion,
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "recall_at_10": recall(found, truth),
                    "close_recall": close_recall(found, truth, truth_scores),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def run_similar_index(sizes: list[int], queries: int, folder: Path, keep: bool = False) -> list[dict]:
    """Build one SimilarIndex to max(sizes), measuring at each size on the way (module doc); the
    saved index files stay in `folder` with `keep`."""
    from datetime import UTC, datetime

    from threadpoolctl import threadpool_limits

    from urgency.similar import SimilarIndex

    largest = max(sizes)
    centres = centres_for(largest)
    data, query_vectors = clustered(largest, 2, centres), clustered(queries, 3, centres)
    ids = np.array([f"T-{row:07d}" for row in range(largest)], dtype=object)
    created = np.zeros(largest)  # POSIX seconds, as the index keeps them
    base = rss_bytes()
    index = SimilarIndex("bench", DIM)
    started, cpu_started = time.perf_counter(), time.process_time()
    built, rows = 0, []
    for checkpoint in sorted(sizes):
        while built < checkpoint:
            stop = min(checkpoint, built + BLOCK)
            block = np.arange(built, stop)
            times = created_times(block, largest)
            created[built:stop] = [when.timestamp() for when in times]
            index.add(ids[block].tolist(), data[built:stop], times)
            built = stop
            print(
                f"  {built:,} indexed, {time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f}",
                file=sys.stderr,
                flush=True,
            )
        build_seconds, build_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        rss_after = rss_bytes()
        part = data[:built]
        # The newest indexed ticket's time is "now"; the window keeps the 30 days before it.
        after = datetime.fromtimestamp(created[built - 1] - WINDOW_SECONDS, UTC)
        first_allowed = int(np.searchsorted(created[:built], after.timestamp(), side="right"))
        truth, truth_scores = exact_top_chunked(part, query_vectors, K)
        truth_window, window_scores = exact_top_chunked(part, query_vectors, K, first_allowed)
        key = {ticket: row for row, ticket in enumerate(ids[:built].tolist())}
        with threadpool_limits(1):
            latencies, found = timed_queries(
                lambda v, key=key: [key[n.ticket_id] for n in index.query(v, K)[0]], query_vectors
            )
            p50, p99 = percentiles(latencies)
            window_latencies, window_found = timed_queries(
                lambda v, key=key, after=after: [
                    key[n.ticket_id] for n in index.query(v, K, created_after=after)[0]
                ],
                query_vectors,
            )
            window_p50, window_p99 = percentiles(window_latencies)
            raw_latencies, _ = timed_queries(
                lambda v: index._index.search(v, K, threads=1).keys.tolist(), query_vectors
            )
            raw_p50, raw_p99 = percentiles(raw_latencies)
            # The anchor: exact search, one matrix-vector product (fewer queries: ~0.7 s each at 1M).
            exact_latencies, _ = timed_queries(
                lambda v, part=part: np.argpartition(-(part @ v), K)[:K].tolist(), query_vectors[:100]
            )
            exact_p50, exact_p99 = percentiles(exact_latencies)
        path = folder / f"similar-{built}.index"
        saved = time.perf_counter()
        index.save(path)
        save_seconds = time.perf_counter() - saved
        row = {
            "vectors": f"clustered {built:,}" + (f" (of {largest:,})" if built < largest else ""),
            "threads": 2,
            "build_s": round(build_seconds, 1),
            "build_cpu_s": round(build_cpu, 1),
            "vectors_per_s": round(built / build_seconds, 1),
            "rss_mb": round(rss_after / 2**20, 1),
            "rss_growth_mb": round((rss_after - base) / 2**20, 1),
            "usearch_memory_mb": round(index._index.memory_usage / 2**20, 1),
            "file_mb": round(path.stat().st_size / 2**20, 1),
            "save_s": round(save_seconds, 1),
            "p50_ms": p50,
            "p99_ms": p99,
            "recall_at_10": recall(found, truth),
            "close_recall": close_recall(found, truth, truth_scores),
            "close_per_query": round(float((truth_scores >= CLOSE).sum()) / len(truth), 2),
            "window_tickets": built - first_allowed,
            "window_p50_ms": window_p50,
            "window_p99_ms": window_p99,
            "window_recall_at_10": recall(window_found, truth_window),
            "window_close_recall": close_recall(window_found, truth_window, window_scores),
            "window_close_per_query": round(float((window_scores >= CLOSE).sum()) / len(truth), 2),
            "usearch_search_p50_ms": raw_p50,
            "usearch_search_p99_ms": raw_p99,
            "exact_p50_ms": exact_p50,
            "exact_p99_ms": exact_p99,
            "queries": len(query_vectors),
        }
        loaded = subprocess.run(
            [
                sys.executable,
                __file__,
                "--load",
                str(path),
                str(largest),
                str(built),
                *["--queries", str(queries)],
            ],
            capture_output=True,
            text=True,
            env=ENV,
        )
        if loaded.returncode != 0:
            print(f"load of {path} failed\n{loaded.stderr[-2000:]}", file=sys.stderr)
        else:
            row.update(json.loads(loaded.stdout.strip().splitlines()[-1]))
        if not keep:
            path.unlink()
        row["load_1min"] = round(os.getloadavg()[0], 1)
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
        # Resume the build's clock without the measuring time.
        paused = time.perf_counter() - started - build_seconds
        paused_cpu = time.process_time() - cpu_started - build_cpu
        started += paused
        cpu_started += paused_cpu
    return rows


def similar_index_table(rows: list[dict]) -> str:
    lines = [
        "| vectors | build s (CPU s) | vectors/s | RSS MB (growth) | file MB | p50 / p99 ms "
        "| recall@10 (close) | 30-day window p50 / p99 ms | window recall@10 (close) "
        "| exact numpy p50 / p99 ms (anchor) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['vectors']} | {row['build_s']:,} ({row['build_cpu_s']:,}) | {row['vectors_per_s']:,} "
            f"| {row['rss_mb']:,} ({row['rss_growth_mb']:,}) | {row['file_mb']:,} "
            f"| {row['p50_ms']} / {row['p99_ms']} | {row['recall_at_10']} ({row['close_recall']}) "
            f"| {row['window_p50_ms']} / {row['window_p99_ms']} "
            f"| {row['window_recall_at_10']} ({row['window_close_recall']}) "
            f"| {row['exact_p50_ms']:,} / {row['exact_p99_ms']:,} |"
        )
    lines += [
        "",
        "| vectors | load s | RSS after load MB (peak) | loaded p50 / p99 ms | view s "
        "| RSS growth of view MB | view p50 / p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "load_s" in row:
            lines.append(
                f"| {row['vectors']} | {row['load_s']} | {row['rss_after_load_mb']:,} "
                f"({row['peak_rss_during_load_mb']:,}) | {row['loaded_p50_ms']} / {row['loaded_p99_ms']} "
                f"| {row['view_s']} | {row['rss_view_growth_mb']:,} "
                f"| {row['view_p50_ms']} / {row['view_p99_ms']} |"
            )
    return "\n".join(lines)


def pd_markdown(rows: list[dict]) -> str:
    import pandas as pd

    return pd.DataFrame(rows).to_markdown(index=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000", help="clustered vector counts, comma separated")
    parser.add_argument("--libraries", default=",".join(LIBRARIES))
    parser.add_argument("--real", type=Path, help="real MiniLM vectors (.npy); none: no real-vector rows")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--budget", type=float, help="seconds of building per library and size, then stop adding"
    )
    parser.add_argument("--one", nargs=3, metavar=("LIBRARY", "KIND", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--similar-index",
        action="store_true",
        help="measure the service's SimilarIndex alone, built to the largest of --sizes (module doc)",
    )
    parser.add_argument("--keep", type=Path, help="with --similar-index: keep the saved index files here")
    parser.add_argument("--load", nargs=3, metavar=("PATH", "SIZE", "BUILT"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--expansions",
        nargs=3,
        metavar=("INDEX_FILE", "SIZE", "BUILT"),
        help="recall and latency of a saved similar index (built by --similar-index to SIZE, holding "
        "BUILT) at search expansions 32,64,128,256,512",
    )
    args = parser.parse_args()
    if args.expansions:
        path, size, built = args.expansions
        rows = measure_expansions(path, int(size), int(built), args.queries, [32, 64, 128, 256, 512])
        print(pd_markdown([{**row, "vectors": f"{row['vectors']:,}"} for row in rows]))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
        return
    if args.load:
        path, size, built = args.load
        print(json.dumps(measure_load(path, int(size), int(built), args.queries)))
        return
    if args.similar_index:
        sizes = [int(size) for size in args.sizes.split(",") if size]
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            rows = run_similar_index(sizes, args.queries, args.keep, keep=True)
        else:
            with tempfile.TemporaryDirectory() as folder:
                rows = run_similar_index(sizes, args.queries, Path(folder))
        print(similar_index_table(rows))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1) + "\n")
        return
    if args.one:
        library, kind, size = args.one
        print(json.dumps(run_one(library, kind, int(size), args.queries, args.real, args.budget)))
        return
    runs = [("real", 0)] if args.real else []
    runs += [("clustered", int(size)) for size in args.sizes.split(",") if size]
    rows = []
    for kind, size in runs:
        for library in args.libraries.split(","):
            command = [
                sys.executable,
                __file__,
                "--one",
                library,
                kind,
                str(size),
                "--queries",
                str(args.queries),
            ]
            if args.real:
                command += ["--real", str(args.real)]
            if args.budget:
                command += ["--budget", str(args.budget)]
            done = subprocess.run(command, capture_output=True, text=True, env=ENV)
            if done.returncode != 0:
                print(f"{library} {kind} {size}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    import pandas as pd

    print(pd.DataFrame(rows).to_markdown(index=False))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

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
    args = parser.parse_args()
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

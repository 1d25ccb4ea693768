"""Many ticket files, on a Dask cluster or here: one Parquet folder out.

Each input file is one task. A worker streams its file through `urgency.predict.predict_file`
(`urgency predict`: models only) or `urgency.scoring.score_file` (`urgency score`: models, then
rules; so the same `score_frame` as a local run) into one part of the output folder, so the
output is the local output, row for row. Workers load the head
models once and keep them for their later tasks. Workers must see the input files and the output
folder (shared storage) and reach the models (a model folder on shared storage, or the registry
through an MLflow tracking server).

Without a cluster (`client=None`) the same tasks run one after another in this process: the
plain local path, with the same output.

Just over 400 lines: one run over many files (parts, manifest, the folder swapped in whole)
and its cluster plumbing are one job.
"""

from __future__ import annotations

import glob
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from urgency.config import Source
from urgency.errors import ClusterError, InputError, OutputError, UrgencyError
from urgency.files import file_format
from urgency.models import HeadModel, ModelSource, load_models
from urgency.parallel import prepare_worker_process
from urgency.predict import predict_file
from urgency.rules import RuleSet
from urgency.rules.engine import surge_active
from urgency.scoring import created_times, score_file

log = logging.getLogger(__name__)

MANIFEST = "_manifest.json"  # Parquet readers skip names starting with "_"
# Output names that say "one file", which a cluster run cannot write.
FILE_SUFFIXES = (".csv", ".gz", ".jsonl", ".ndjson", ".json")


# ---------------------------------------------------------------------------------------------
# Models, loaded once per worker process


_loaded: dict[ModelSource, dict[str, HeadModel]] = {}
_loading = threading.Lock()


def worker_models(source: ModelSource) -> dict[str, HeadModel]:
    """The source's models, loaded once per process (a worker's threads share them)."""
    with _loading:
        if source not in _loaded:
            # One model set per worker: a later run with new versions replaces the old set.
            _loaded.clear()
            _loaded[source] = load_models(source)
        return _loaded[source]


# ---------------------------------------------------------------------------------------------
# One task: one input file into one output part


@dataclass(frozen=True)
class FileOptions:
    """How each file is read and turned into model input."""

    subject_column: str | None
    body_column: str
    max_text_chars: int
    chunk_size: int
    # The params source every file is read through (urgency.tickets); None: the columns above.
    source: Source | None = None
    # Put before every column the output adds (`--output-prefix`).
    prefix: str = ""


@dataclass(frozen=True)
class Scoring:
    """`urgency score` on a cluster: the rules, the moment of deciding and surge on or off,
    settled once for the whole run so every part decides alike."""

    rules: RuleSet
    now: datetime
    surge: bool


@dataclass
class PartResult:
    input: str
    part: str
    rows: int
    rows_with_error: int
    seconds: float


def run_partition(
    source: ModelSource,
    input_path: str,
    part_path: str,
    options: FileOptions,
    scoring: Scoring | None = None,
) -> PartResult:
    """One input file into one Parquet part (runs on a worker, or locally): predicted
    (`predict_file`), or predicted and decided (`score_file` in input order) with `scoring`."""
    part = Path(part_path)
    started = time.perf_counter()
    models = worker_models(source)
    # The run's folder is gone when the run failed elsewhere and cleaned up: do not recreate it.
    if not part.parent.is_dir():
        raise ClusterError(f"output folder {part.parent} is gone: the run was abandoned")
    columns = {
        "subject_column": options.subject_column,
        "body_column": options.body_column,
        "max_text_chars": options.max_text_chars,
        "chunk_size": options.chunk_size,
        "source": options.source,
        "prefix": options.prefix,
    }
    if scoring is None:
        stats = predict_file(models, Path(input_path), part, **columns)
        rows, rows_with_error = stats.rows, stats.rows_with_error
    else:
        scored = score_file(
            models,
            scoring.rules,
            Path(input_path),
            part,
            now=scoring.now,
            surge=scoring.surge,
            queue=False,
            **columns,
        )
        rows, rows_with_error = scored.rows, scored.rows_with_error
    return PartResult(input_path, part.name, rows, rows_with_error, time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------
# A whole run


def is_pattern(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def input_files(pattern: str) -> list[Path]:
    """The files a glob pattern (or one path) names, sorted: their order is the output's order."""
    if not is_pattern(pattern):
        path = Path(pattern)
        if not path.is_file():
            raise InputError(f"{pattern}: file not found")
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not files:
            raise InputError(f"no input file matches {pattern!r}")
    for path in files:
        file_format(path)  # an unknown file type fails here, before any work starts
    return [path.resolve() for path in files]


def check_output(output: Path) -> None:
    """The output is a folder; an existing one is replaced only if an earlier run wrote it. A
    refusal is an OutputError (exit 10): it is about where to write, not what is read."""
    if output.suffix.lower() in FILE_SUFFIXES:
        raise OutputError(
            f"--output {output}: scoring many files (or on a cluster: --scheduler or "
            "$URGENCY_SCHEDULER is set) writes a folder of Parquet parts; give a folder name "
            "(e.g. scored/), or unset URGENCY_SCHEDULER to score one file into one file here"
        )
    ours = output.is_dir() and (not any(output.iterdir()) or (output / MANIFEST).exists())
    if output.exists() and not ours:
        raise OutputError(
            f"--output {output} exists and is not an earlier scoring output ({MANIFEST} missing); "
            "choose another folder"
        )


@dataclass
class FilesResult:
    output: Path
    files: int
    rows: int
    rows_with_error: int
    parts: list[PartResult]


def predict_files(
    pattern: str,
    output: Path,
    source: ModelSource,
    options: FileOptions,
    *,
    client: Any = None,
    on_part: Callable[[PartResult], None] | None = None,
) -> FilesResult:
    """Predict (models only) every file `pattern` matches into the Parquet folder `output`."""
    return _run_files(pattern, output, source, options, None, client=client, on_part=on_part)


def score_files(
    pattern: str,
    output: Path,
    source: ModelSource,
    options: FileOptions,
    *,
    rules: RuleSet,
    now: datetime,
    surge: bool | None = None,
    client: Any = None,
    on_part: Callable[[PartResult], None] | None = None,
) -> FilesResult:
    """Score (predict, then decide) every file `pattern` matches into the Parquet folder
    `output`. Surge `auto` counts the created times of every file, read here before any part
    starts; each part keeps its file's order (the queue order is the `order_key` column)."""
    if surge is None:
        created: list[Any] = []
        for path in input_files(pattern):
            created += created_times(path, rules.spec.created_at.column, options.chunk_size, options.source)
        surge = surge_active(rules, created, now)
    scoring = Scoring(rules, now, surge)
    return _run_files(pattern, output, source, options, scoring, client=client, on_part=on_part)


def _run_files(
    pattern: str,
    output: Path,
    source: ModelSource,
    options: FileOptions,
    scoring: Scoring | None,
    *,
    client: Any,
    on_part: Callable[[PartResult], None] | None,
) -> FilesResult:
    """One part per file, written into `<output>.partial/`, which replaces `output` only when
    every part is written: a failure leaves no half-written output and keeps an older one. With a
    `distributed.Client` the files run on its workers, otherwise here, one after another."""
    files = input_files(pattern)
    check_output(output)
    output = output.resolve()
    partial = output.with_name(output.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # left by a run that was killed
    partial.mkdir(parents=True)
    width = max(5, len(str(len(files) - 1)))
    jobs = [(str(path), str(partial / f"part-{i:0{width}d}.parquet")) for i, path in enumerate(files)]
    try:
        if client is None:
            parts = []
            for input_path, part_path in jobs:
                parts.append(run_partition(source, input_path, part_path, options, scoring))
                if on_part:
                    on_part(parts[-1])
        else:
            parts = _run_on_cluster(client, source, jobs, options, scoring, on_part)
        result = _finish(partial, parts, source, pattern)
        _replace(partial, output)
    except BaseException:
        _remove(partial)
        raise
    result.output = output
    return result


def _run_on_cluster(
    client: Any,
    source: ModelSource,
    jobs: list[tuple[str, str]],
    options: FileOptions,
    scoring: Scoring | None,
    on_part: Callable[[PartResult], None] | None,
) -> list[PartResult]:
    from distributed import as_completed

    # Every worker, and any that joins later, set up for scoring once (`prepare_worker_process`).
    try:
        client.register_plugin(_scoring_worker_plugin())
    except Exception as error:
        raise ClusterError(
            f"setting up the Dask workers for scoring failed: {type(error).__name__}: {error}; "
            "look at the workers' logs"
        ) from None
    futures = {
        client.submit(run_partition, source, input_path, part_path, options, scoring, pure=False): input_path
        for input_path, part_path in jobs
    }
    done: dict[str, PartResult] = {}
    try:
        for future in as_completed(futures):
            try:
                part = future.result()
            except UrgencyError:
                raise  # e.g. an unreadable file: the message names it
            except Exception as error:
                raise _cluster_error(error, futures[future]) from None
            done[part.input] = part
            if on_part:
                on_part(part)
    except BaseException:
        # Tasks not started yet never start; running ones see their folder gone and stop.
        with suppress(Exception):  # the scheduler may be the thing that failed
            client.cancel(list(futures))
        raise
    return [done[input_path] for input_path, _ in jobs]


def _cluster_error(error: Exception, input_path: str) -> ClusterError:
    from distributed import KilledWorker

    if isinstance(error, KilledWorker):
        return ClusterError(
            f"a Dask worker died while scoring {input_path} (out of memory, or killed); "
            "look at the workers' logs and memory limit"
        )
    return ClusterError(f"scoring {input_path} failed on the cluster: {type(error).__name__}: {error}")


def _finish(partial: Path, parts: list[PartResult], source: ModelSource, pattern: str) -> FilesResult:
    """Drop empty parts, check that every part has the same columns, write the manifest."""
    import pyarrow.parquet as pq

    kept = []
    first: tuple[str, Any] | None = None
    for part in parts:
        path = partial / part.part
        if part.rows == 0:  # an empty input file has no columns to agree on
            path.unlink()
            continue
        schema = pq.read_schema(path).remove_metadata()
        if first is None:
            first = (part.input, schema)
        elif not schema.equals(first[1]):
            raise InputError(
                f"input files differ in columns or types: {first[0]} has {_describe(first[1])}, "
                f"{part.input} has {_describe(schema)}; one output needs one schema"
            )
        kept.append(part)
    result = FilesResult(
        output=partial,
        files=len(parts),
        rows=sum(part.rows for part in parts),
        rows_with_error=sum(part.rows_with_error for part in parts),
        parts=kept,
    )
    manifest = {
        "input": pattern,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": source.describe(),
        "rows": result.rows,
        "rows_with_error": result.rows_with_error,
        "parts": [asdict(part) for part in parts],
    }
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return result


def _remove(partial: Path) -> None:
    # Tasks still running on other workers may create a file while the folder is being removed
    # (they stop at their next write); try again until it is gone.
    for _ in range(50):
        shutil.rmtree(partial, ignore_errors=True)
        if not partial.exists():
            return
        time.sleep(0.1)
    log.warning("could not remove %s; the next run removes it", partial)


def _describe(schema: Any) -> str:
    return "[" + ", ".join(f"{field.name}: {field.type}" for field in schema) + "]"


def _replace(partial: Path, output: Path) -> None:
    """Put the finished folder in place of `output` (a folder cannot be swapped in one step)."""
    if not output.exists():
        partial.rename(output)
        return
    old = output.with_name(output.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    output.rename(old)
    partial.rename(output)
    shutil.rmtree(old)


# ---------------------------------------------------------------------------------------------
# Worker processes, set up once for scoring


def _scoring_worker_plugin() -> Any:
    """A worker plugin that runs `parallel.prepare_worker_process` once in every worker process.
    Unpickling it on a worker imports only `urgency.parallel` (the standard library): a worker
    too small for the models still dies in its task, which names the file."""
    from distributed import WorkerPlugin

    class ScoringWorker(WorkerPlugin):
        name = "urgency-scoring-worker"
        idempotent = True  # registered by every run: set up once per worker process

        def setup(self, worker: Any) -> None:
            log.info("worker %s set up for scoring: %s", worker.address, "; ".join(prepare_worker_process()))

    return ScoringWorker()


# ---------------------------------------------------------------------------------------------
# Clusters

# The local cluster's Dask settings (both measured in README "Running on a cluster"): glibc's
# own malloc thresholds in the workers, as in a plain process (`parallel.prepare_worker_process`
# says why), and no statistical profiler sampling each worker's stacks 100 times a second (a few
# percent of every core; the dashboard's Profile page stays empty).
LOCAL_CLUSTER_CONFIG = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
}


@contextmanager
def dask_client(scheduler: str, *, n_workers: int | None = None, timeout: str = "20s") -> Iterator[Any]:
    """A client of the scheduler at `scheduler` (tcp://HOST:PORT), or of a new local cluster
    (`local`: one single-threaded worker process per core, on 127.0.0.1, stopped at the end)."""
    from distributed import Client, LocalCluster

    if scheduler == "local":
        import dask

        # One thread per worker process: the TF-IDF step holds the GIL, so processes give the speed.
        # The nannies read the settings as they start the workers, inside the `with`.
        with (
            dask.config.set(LOCAL_CLUSTER_CONFIG),
            LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            ) as cluster,
            Client(cluster) as client,
        ):
            workers = len(client.scheduler_info()["workers"])
            log.info("local Dask cluster: %d workers, dashboard %s", workers, client.dashboard_link)
            yield client
        return
    try:
        client = Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as error:
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None
    with client:
        yield client

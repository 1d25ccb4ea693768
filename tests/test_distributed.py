"""Batch scoring on Dask: a real `dask scheduler` and two `dask worker` processes on 127.0.0.1
score a sample of the shared data exactly as the local path does; a missing file, an unreadable
file or a dying worker gives a clear error and leaves no half-written output."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import PROJECT, SHARED_DATA, write_server_params
from tests.dask_cluster import DaskCluster
from tests.mlflow_server import running_mlflow_server
from urgency import distributed
from urgency.cli import app
from urgency.config import HEADS, load_params
from urgency.distributed import ClusterError, FileOptions, predict_files, score_files
from urgency.errors import InputError, OutputError
from urgency.models import ModelSource, load_registered_models, resolve_registry
from urgency.predict import predict_file
from urgency.rules import load_rules
from urgency.scoring import score_frame
from urgency.tracking import export_models

OPTIONS = FileOptions(subject_column="subject", body_column="body", max_text_chars=5000, chunk_size=300)
NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
needs_shared_data = pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data is not here")


def shared_sample(rows: int = 2000) -> pd.DataFrame:
    """Real tickets from three shared datasets in one shape (id, subject, body), a few empty."""
    synthetic = pd.read_csv(SHARED_DATA / "support_tickets_synthetic.csv", dtype=str, keep_default_na=False)
    jira = pd.read_csv(SHARED_DATA / "jira_issues_priority.csv", dtype=str, keep_default_na=False)
    tweets = pd.read_csv(SHARED_DATA / "airline_tweets_sentiment.csv", dtype=str, keep_default_na=False)
    frame = pd.concat(
        [
            synthetic[["subject", "body"]],
            jira.rename(columns={"summary": "subject", "description": "body"})[["subject", "body"]],
            tweets.assign(subject="").rename(columns={"text": "body"})[["subject", "body"]],
        ],
        ignore_index=True,
    ).sample(n=rows, random_state=7)
    frame.iloc[:4, :] = ""  # rows the models cannot score: a row error, never a stopped file
    return frame.assign(ticket_id=[f"S{i}" for i in range(rows)]).reset_index(drop=True)


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 shared-data tickets in three Parquet files of different sizes."""
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is not next to the project")
    folder = tmp_path_factory.mktemp("tickets")
    frame = shared_sample()
    for i, (start, stop) in enumerate([(0, 900), (900, 1500), (1500, 2000)]):
        frame.iloc[start:stop].to_parquet(folder / f"tickets-{i}.parquet", index=False)
    return folder


def registry(trained: dict[str, Any]) -> ModelSource:
    params = trained["params"]
    return resolve_registry(
        list(HEADS),
        tracking_uri=params.mlflow.tracking_uri,
        model_names={head: params.mlflow.model_name(head) for head in HEADS},
        alias="champion",
    )


def local_reference(models: dict[str, Any], folder: Path, out: Path) -> pd.DataFrame:
    """Today's local path, file by file."""
    frames = []
    for i, path in enumerate(sorted(folder.glob("*.parquet"))):
        target = out / f"local-{i}.parquet"
        predict_file(
            models,
            path,
            target,
            subject_column=OPTIONS.subject_column,
            body_column=OPTIONS.body_column,
            max_text_chars=OPTIONS.max_text_chars,
            chunk_size=OPTIONS.chunk_size,
        )
        frames.append(pd.read_parquet(target))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    cluster = DaskCluster(tmp_path_factory.mktemp("dask")).start(workers=2)
    yield cluster
    cluster.stop()


def _loaded_model_ids() -> list[int]:
    return [id(model) for models in distributed._loaded.values() for model in models.values()]


# ---------------------------------------------------------------------------------------------
# The local loop and the checks before any work starts


@needs_shared_data
def test_local_loop_matches_predict_file(
    sample_files: Path, trained: dict[str, Any], models: dict[str, Any], tmp_path: Path
) -> None:
    result = predict_files(str(sample_files / "*.parquet"), tmp_path / "scored", registry(trained), OPTIONS)

    assert (result.files, result.rows, result.rows_with_error) == (3, 2000, 4)
    scored = pd.read_parquet(tmp_path / "scored")
    pd.testing.assert_frame_equal(scored, local_reference(models, sample_files, tmp_path), check_exact=True)
    assert sorted(p.name for p in (tmp_path / "scored").iterdir()) == [
        "_manifest.json",
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    manifest = json.loads((tmp_path / "scored" / "_manifest.json").read_text())
    assert [part["rows"] for part in manifest["parts"]] == [900, 600, 500]
    assert manifest["models"]["urgency"].startswith("models:/ticket-urgency/")


def score_reference(models: dict[str, Any], folder: Path, rules: Any, surge: bool) -> pd.DataFrame:
    """`score_frame` (the one predict-then-decide path) over the files' tickets, in input order."""
    tickets = pd.concat(
        [pd.read_parquet(path) for path in sorted(folder.glob("*.parquet"))], ignore_index=True
    )
    return score_frame(
        models,
        tickets,
        rules,
        now=NOW,
        surge=surge,
        subject_column=OPTIONS.subject_column,
        body_column=OPTIONS.body_column,
        max_text_chars=OPTIONS.max_text_chars,
    ).frame()


@needs_shared_data
def test_scoring_files_decides_like_score_frame(
    sample_files: Path, trained: dict[str, Any], models: dict[str, Any], tmp_path: Path
) -> None:
    rules = load_rules(PROJECT / "rules.yaml")
    result = score_files(
        str(sample_files / "*.parquet"), tmp_path / "queue", registry(trained), OPTIONS, rules=rules, now=NOW
    )

    assert (result.files, result.rows, result.rows_with_error) == (3, 2000, 4)
    scored = pd.read_parquet(tmp_path / "queue")
    reference = score_reference(models, sample_files, rules, surge=False)  # no created times: no surge
    assert list(scored.columns) == list(reference.columns)
    assert scored["order_key"].tolist() == reference["order_key"].tolist()
    assert scored["explanation"].tolist() == reference["explanation"].tolist()
    assert scored["priority"].notna().all() and scored["team"].notna().all()


def test_no_matching_file_names_the_pattern(tmp_path: Path, params_file: Path) -> None:
    pattern = str(tmp_path / "exports" / "*.parquet")
    with pytest.raises(InputError, match=r"no input file matches .*exports/\*\.parquet"):
        predict_files(pattern, tmp_path / "out", ModelSource(()), OPTIONS)
    with pytest.raises(InputError, match=r"missing\.csv: file not found"):
        predict_files(str(tmp_path / "missing.csv"), tmp_path / "out", ModelSource(()), OPTIONS)

    done = CliRunner().invoke(
        app, ["predict", "-p", str(params_file), "-i", pattern, "-o", str(tmp_path / "out")]
    )
    assert done.exit_code == 6, done.output
    assert "no input file matches" in done.output and "exports/*.parquet" in done.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_output_must_be_a_scoring_folder(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("body\nhello\n")
    with pytest.raises(OutputError, match="writes a folder of Parquet parts"):
        predict_files(str(tmp_path / "*.csv"), tmp_path / "scored.csv", ModelSource(()), OPTIONS)
    precious = tmp_path / "reports"
    precious.mkdir()
    (precious / "q3.xlsx").write_text("not ours")
    with pytest.raises(OutputError, match="not an earlier scoring output"):
        predict_files(str(tmp_path / "*.csv"), precious, ModelSource(()), OPTIONS)
    assert (precious / "q3.xlsx").read_text() == "not ours"


def test_a_scheduler_from_the_environment_with_a_file_output_says_how_to_score_here(
    tmp_path: Path, params_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.csv").write_text("body\nhello\n")
    monkeypatch.setenv("URGENCY_SCHEDULER", "tcp://127.0.0.1:1")
    done = CliRunner().invoke(
        app, ["predict", "-p", str(params_file), "-i", str(tmp_path / "a.csv"), "-o", str(tmp_path / "b.csv")]
    )
    assert done.exit_code == 10, done.output  # OutputError: where to write, not what is read
    assert "unset URGENCY_SCHEDULER" in " ".join(done.output.split())
    assert not (tmp_path / "b.csv").exists()


def test_files_with_different_columns_are_refused(
    trained: dict[str, Any], models: dict[str, Any], tmp_path: Path
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    pd.DataFrame({"subject": ["disk full"], "body": ["server down"]}).to_csv(inputs / "a.csv", index=False)
    pd.DataFrame({"body": ["printer jams"], "plan": ["free"]}).to_csv(inputs / "b.csv", index=False)
    with pytest.raises(InputError, match=r"differ in columns.*b\.csv has \[body: "):
        predict_files(str(inputs / "*.csv"), tmp_path / "out", registry(trained), OPTIONS)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


# ---------------------------------------------------------------------------------------------
# A real cluster: scheduler and two workers as separate processes on 127.0.0.1


@pytest.mark.slow
@needs_shared_data
def test_cluster_output_is_the_local_output_row_for_row(
    cluster: DaskCluster, sample_files: Path, trained: dict[str, Any], models: dict[str, Any], tmp_path: Path
) -> None:
    from distributed import Client

    source = registry(trained)
    with Client(cluster.address) as client:
        result = predict_files(
            str(sample_files / "*.parquet"), tmp_path / "scored", source, OPTIONS, client=client
        )
        first = client.run(_loaded_model_ids)
        predict_files(str(sample_files / "*.parquet"), tmp_path / "again", source, OPTIONS, client=client)
        second = client.run(_loaded_model_ids)
        rules = load_rules(PROJECT / "rules.yaml")
        score_files(
            str(sample_files / "*.parquet"),
            tmp_path / "queue",
            source,
            OPTIONS,
            rules=rules,
            now=NOW,
            client=client,
        )

    queue = pd.read_parquet(tmp_path / "queue")
    assert (
        queue["order_key"].tolist()
        == score_reference(models, sample_files, rules, False)["order_key"].tolist()
    )

    assert (result.rows, result.rows_with_error) == (2000, 4)
    reference = local_reference(models, sample_files, tmp_path)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "scored"), reference, check_exact=True)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "again"), reference, check_exact=True)
    # Both workers took part, and the second run reused the models each worker had loaded.
    assert len(first) == 2 and all(len(ids) == len(HEADS) for ids in first.values())
    assert second == first


@pytest.mark.slow
@needs_shared_data
def test_cli_on_the_cluster_and_a_failed_run_keeps_the_older_output(
    cluster: DaskCluster, sample_files: Path, trained: dict[str, Any], models: dict[str, Any], tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    mlflow.set_tracking_uri(trained["params"].mlflow.tracking_uri)
    mlflow.set_registry_uri(trained["params"].mlflow.tracking_uri)
    export_models(mlflow.MlflowClient(), {h: f"ticket-{h}" for h in HEADS}, "champion", model_dir)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in sample_files.glob("*.parquet"):
        (inputs / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "scored"
    args = ["predict", "-p", str(trained["params_path"]), "--model-dir", str(model_dir)]
    args += ["-i", str(inputs / "*.parquet"), "-o", str(out), "--chunk-size", "300"]

    # The scheduler from the environment, as a team would set it once.
    done = CliRunner().invoke(app, args, env={"URGENCY_SCHEDULER": cluster.address})
    assert done.exit_code == 0, done.output
    assert "2000 tickets from 3 file(s)" in done.output and cluster.address in done.output
    pd.testing.assert_frame_equal(
        pd.read_parquet(out), local_reference(models, sample_files, tmp_path), check_exact=True
    )
    before = {path.name: path.read_bytes() for path in out.iterdir()}

    # A file that is not Parquet at all: the run fails naming it, the older output stays whole.
    (inputs / "tickets-9.parquet").write_bytes(b"PAR1 this is not parquet")
    done = CliRunner().invoke(app, [*args, "--scheduler", cluster.address])
    assert done.exit_code == 6, done.output
    assert "tickets-9.parquet: cannot be read as parquet" in done.output
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert not (tmp_path / "scored.partial").exists()


@pytest.mark.slow
@needs_shared_data
def test_a_dying_worker_is_a_clear_error_and_no_output(
    sample_files: Path, trained: dict[str, Any], tmp_path: Path
) -> None:
    # A worker too small for the models: its nanny kills it when loading them passes its memory
    # limit; the scheduler gives up on the task at the first death.
    broken = DaskCluster(tmp_path / "dask", env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}).start(
        workers=1, worker_args=("--memory-limit", "200MB")
    )
    try:
        from distributed import Client

        with Client(broken.address) as client, pytest.raises(ClusterError, match="a Dask worker died while"):
            predict_files(
                str(sample_files / "*.parquet"), tmp_path / "out", registry(trained), OPTIONS, client=client
            )
    finally:
        broken.stop()
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def _worker_process(dask_worker: Any) -> dict[str, Any]:
    """How a worker process runs (sent with `client.run`): its malloc setting from the
    environment, its thread pools, whether its statistical profiler runs, and the page faults
    of allocating and freeing 1 MiB forty times (blocks reused: next to none; each one mapped
    afresh: 256 each; under numpy's 4 MiB, above which it asks for huge pages)."""
    import os
    import resource

    import numpy as np
    from threadpoolctl import threadpool_info

    np.ones(2**17)
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(40):
        np.ones(2**17)
    return {
        "trim": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        "faults": resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before,
        "threads": {pool["num_threads"] for pool in threadpool_info()},
        "pools": sorted(pool["filepath"] for pool in threadpool_info()),
        "profiler": "profile" in dask_worker.periodic_callbacks,
    }


@pytest.mark.slow
@needs_shared_data
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the malloc setting is glibc's")
def test_cluster_workers_reuse_freed_memory_and_run_one_thread_each(
    sample_files: Path, trained: dict[str, Any], tmp_path: Path
) -> None:
    from distributed import Client

    # Workers as `dask worker` starts them: the nanny sets MALLOC_TRIM_THRESHOLD_, so every
    # block over 128 KiB is mapped afresh and faulted in again, until a run sets them up; and
    # thread pools two wide (a variable set before the nanny starts is the one it passes on).
    started = DaskCluster(
        tmp_path / "dask",
        env=dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "2"),
    ).start(workers=2)
    try:
        with Client(started.address) as client:
            before = client.run(_worker_process)
            predict_files(
                str(sample_files / "*.parquet"),
                tmp_path / "scored",
                registry(trained),
                OPTIONS,
                client=client,
            )
            after = client.run(_worker_process)
    finally:
        started.stop()
    assert all(state["trim"] and state["faults"] > 2000 for state in before.values()), before
    assert all(state["threads"] == {2} for state in before.values()), before
    # After scoring: the models' own pools (scipy's OpenBLAS, scikit-learn's OpenMP) loaded, one
    # thread each, and freed blocks reused as in a plain process.
    assert all(state["faults"] < 1000 and state["threads"] == {1} for state in after.values()), after
    assert all(len(state["pools"]) >= 2 for state in after.values()), after


@pytest.mark.slow
def test_the_local_cluster_runs_its_workers_as_a_plain_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # A nanny copies MALLOC_TRIM_THRESHOLD_ into the process that starts it: a cluster started
    # earlier in this process must not decide what this one inherits.
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with distributed.dask_client("local", n_workers=1) as client:
        (state,) = client.run(_worker_process).values()
    # glibc's own thresholds (freed blocks reused, as in a plain process) and no profiler
    # sampling the worker's stacks, without any run having set the worker up.
    assert state["trim"] is None and state["faults"] < 1000 and not state["profiler"], state


def test_unreachable_scheduler_is_a_cluster_error() -> None:
    from tests.postgres import free_port

    with (
        pytest.raises(ClusterError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:"),
        distributed.dask_client(f"tcp://127.0.0.1:{free_port()}", timeout="1s"),
    ):
        pass


# ---------------------------------------------------------------------------------------------
# A team's MLflow: a tracking server with a PostgreSQL backend store, workers loading through it


@pytest.fixture
def mlflow_server(postgres: Any, tmp_path: Path):
    backend = postgres.create_database("mlflow_dask")
    artifacts = tmp_path / "shared-artifacts"
    with running_mlflow_server(backend, artifacts, tmp_path / "mlflow-server.log") as url:
        yield url, artifacts


@pytest.mark.slow
@needs_shared_data
def test_workers_load_the_models_through_a_postgres_backed_tracking_server(
    cluster: DaskCluster, mlflow_server: tuple[str, Path], sample_files: Path, tmp_path: Path
) -> None:
    from distributed import Client

    from urgency.train import train

    url, artifacts = mlflow_server
    params_path = write_server_params(tmp_path, url)
    params = load_params(params_path)
    train(params, list(HEADS), params_path=params_path, code_folder=PROJECT)
    assert any(artifacts.rglob("MLmodel")) and not (tmp_path / "unused").exists()

    names = {head: params.mlflow.model_name(head) for head in HEADS}
    source = resolve_registry(list(HEADS), tracking_uri=url, model_names=names, alias="champion")
    assert {ref.uri for ref in source.heads} == {f"models:/{name}/1" for name in names.values()}
    with Client(cluster.address) as client:
        predict_files(str(sample_files / "*.parquet"), tmp_path / "scored", source, OPTIONS, client=client)
    models = load_registered_models(list(HEADS), tracking_uri=url, model_names=names, alias="champion")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "scored"),
        local_reference(models, sample_files, tmp_path),
        check_exact=True,
    )

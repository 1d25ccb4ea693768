"""Starting the service (serve.launch): settings, the workers' environment, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from serve import launch
from serve.launch import run, service_settings, worker_environment
from serve.settings import ServiceSettings
from urgency.errors import ParamsError


def test_settings_take_the_given_values_over_the_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("URGENCY_DATABASE_URL", "sqlite:///from-env.db")
    params = tmp_path / "params.yaml"
    given = service_settings(params, database_url="sqlite:///given.db", model_dir=None)
    assert given.store_url() == "sqlite:///given.db" and given.model_dir is None
    assert service_settings(params).store_url() == "sqlite:///from-env.db"


def test_an_invalid_variable_is_a_params_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URGENCY_MAX_BATCH", "0")
    with pytest.raises(ParamsError, match="URGENCY_"):
        service_settings(tmp_path / "params.yaml")


def test_workers_get_absolute_paths_and_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("URGENCY_DATABASE_URL", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("serve.launch.default_jobs", lambda: 4)
    settings = ServiceSettings(params=Path("params.yaml"), model_dir=Path("models"))
    assert worker_environment(settings, workers=2) == {
        "OMP_NUM_THREADS": "2",  # four cores shared by two workers
        "URGENCY_PARAMS": str(tmp_path / "params.yaml"),
        "URGENCY_DATABASE_URL": f"sqlite:///{tmp_path}/data/service.db",
        "URGENCY_MODEL_DIR": str(tmp_path / "models"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    without_models = worker_environment(ServiceSettings(params=Path("params.yaml")))
    assert "URGENCY_MODEL_DIR" not in without_models


def test_production_without_keys_is_refused_before_the_store(tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    settings = ServiceSettings(
        mode="production", params=tmp_path / "params.yaml", database_url=f"sqlite:///{database}"
    )
    heard = []
    with pytest.raises(ParamsError, match="refusing to start: mode 'production' needs URGENCY_API_KEYS"):
        run(settings, host="127.0.0.1", port=0, on_ready=heard.append)
    assert heard == [] and not database.exists()


@pytest.mark.parametrize("keys", ["not json", '{"name": "x"', "[{]"])
def test_badly_formed_api_keys_are_a_params_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keys: str
) -> None:
    monkeypatch.setenv("URGENCY_API_KEYS", keys)
    with pytest.raises(ParamsError, match="URGENCY_API_KEYS"):
        service_settings(tmp_path / "params.yaml")


def test_serve_exits_3_on_badly_formed_api_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from urgency.cli import app as cli

    monkeypatch.setenv("URGENCY_API_KEYS", "not json")
    done = CliRunner().invoke(cli, ["serve", "--params", str(tmp_path / "params.yaml"), "--port", "1"])
    assert done.exit_code == 3, done.output
    assert "URGENCY_API_KEYS" in done.output


def test_several_workers_refuse_a_missing_model_before_starting(tmp_path: Path) -> None:
    # The workers load the models in their own lifespans; the parent resolves them first, so a
    # folder without models is a clear error, not workers that die one after the other.
    from typer.testing import CliRunner

    from urgency.cli import app as cli

    (tmp_path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text())
    (tmp_path / "empty").mkdir()
    arguments = ["serve", "--params", str(tmp_path / "params.yaml"), "--workers", "2", "--port", "1"]
    arguments += ["--model-dir", str(tmp_path / "empty"), "--database-url", f"sqlite:///{tmp_path / 's.db'}"]
    done = CliRunner().invoke(cli, arguments)
    assert done.exit_code == 5, done.output  # a model not found (urgency.errors)
    assert f"no head model in {tmp_path / 'empty'}" in done.output and "Traceback" not in done.output


def test_workers_log_the_services_lines(tmp_path: Path) -> None:
    """A worker process applies only uvicorn's logging configuration: it must carry the
    service's loggers, else `urgency.*` INFO lines (the similar-tickets index rebuilt, the models
    served) vanish with several workers. A fresh interpreter, as a worker is."""
    import subprocess
    import sys

    script = (
        "import logging.config\n"
        "from serve.launch import worker_log_config\n"
        "logging.config.dictConfig(worker_log_config())\n"
        "logging.getLogger('urgency.similar').info('index rebuilt')\n"
        "logging.getLogger('urgency.serve').warning('a warning')\n"
        "logging.getLogger('mlflow').info('chatter')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "INFO urgency.similar: index rebuilt" in done.stderr
    assert "WARNING urgency.serve: a warning" in done.stderr
    assert "chatter" not in done.stderr


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 1), (3, 1), (8, 4)])
def test_one_worker_per_two_cores_by_default(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int
) -> None:
    monkeypatch.setattr(launch, "default_jobs", lambda: cores)
    assert launch.default_workers() == workers

"""Small ticket sources and params made in the tests, and one tiny trained model set."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"

URGENT = ["server down outage", "production broken critical", "cannot work system crashed", "data lost now"]
NORMAL = ["slow page load", "report looks wrong", "email sync delayed", "printer jams sometimes"]
CALM = ["question about invoice", "feature idea dark mode", "thanks for help", "how to change avatar"]
CATEGORIES = {
    "Hardware": ["laptop screen broken", "keyboard not working", "new monitor needed"],
    "Access": ["password reset please", "grant access to drive", "account locked out"],
    "Purchase": ["order new licence", "buy headset please", "purchase request for chairs"],
}
MOODS = {
    "negative": ["worst service ever angry", "terrible delay again", "lost my bag awful"],
    "neutral": ["flight schedule for tomorrow", "what is the baggage rule", "change seat possible"],
    "positive": ["thank you great crew", "love the new app", "amazing friendly staff"],
}


def _rows(phrases: list[str], label: str, copies: int) -> list[tuple[str, str]]:
    # Each row gets a number so texts differ (grouped splits would otherwise keep them together).
    return [(f"{phrase} ticket {i}", label) for i in range(copies) for phrase in phrases]


def write_sources(folder: Path, copies: int = 6) -> dict[str, Path]:
    """Three small CSV sources, one per head, in the shapes real exports come in."""
    folder.mkdir(parents=True, exist_ok=True)
    urgency_rows = _rows(URGENT, "P1", copies) + _rows(NORMAL, "P2", copies) + _rows(CALM, "P3", copies)
    urgency = pd.DataFrame(
        {
            "key": [f"T-{i}" for i in range(len(urgency_rows))],
            "title": [f"subject {i}" for i in range(len(urgency_rows))],
            "description": [text for text, _ in urgency_rows],
            "prio": [label for _, label in urgency_rows],
            "opened": "2026-01-05 09:00",
        }
    )
    category_rows = [row for label, phrases in CATEGORIES.items() for row in _rows(phrases, label, copies)]
    category = pd.DataFrame({"text": [t for t, _ in category_rows], "group": [g for _, g in category_rows]})
    mood_rows = [row for label, phrases in MOODS.items() for row in _rows(phrases, label, copies)]
    sentiment = pd.DataFrame({"tweet": [t for t, _ in mood_rows], "mood": [m for _, m in mood_rows]})
    paths = {
        "urgency": folder / "urgency.csv",
        "category": folder / "category.csv",
        "sentiment": folder / "sentiment.csv",
    }
    urgency.to_csv(paths["urgency"], index=False)
    category.to_csv(paths["category"], index=False)
    sentiment.to_csv(paths["sentiment"], index=False)
    return paths


def params_dict(paths: dict[str, Path], store: Path) -> dict[str, Any]:
    """A params mapping over `write_sources` files with an MLflow store under `store`."""
    return {
        "data": {
            "sources": [
                {
                    "name": "tickets",
                    "path": str(paths["urgency"]),
                    "columns": {
                        "id": "key",
                        "subject": "title",
                        "body": "description",
                        "created_at": "opened",
                    },
                    "constants": {"language": "en"},
                    "labels": {
                        "urgency": {"column": "prio", "mapping": {"P1": "high", "P2": "medium", "P3": "low"}}
                    },
                },
                {
                    "name": "topics",
                    "path": str(paths["category"]),
                    "columns": {"body": "text"},
                    "labels": {
                        "category": {"column": "group", "mapping": {c: c for c in CATEGORIES}},
                    },
                },
                {
                    "name": "tweets",
                    "path": str(paths["sentiment"]),
                    "columns": {"body": "tweet"},
                    "labels": {"sentiment": {"column": "mood", "mapping": {m: m for m in MOODS}}},
                },
            ]
        },
        "heads": {
            "urgency": {"labels": ["high", "medium", "low"], "baseline": {"min_df": 1, "max_features": 5000}},
            "category": {"labels": list(CATEGORIES), "baseline": {"min_df": 1, "max_features": 5000}},
            "sentiment": {"labels": list(MOODS), "baseline": {"min_df": 1, "max_features": 5000}},
        },
        "mlflow": {
            "tracking_uri": f"sqlite:///{store / 'mlflow.db'}",
            "artifact_location": str(store / "artifacts"),
        },
    }


def write_params(folder: Path, data: dict[str, Any]) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_server_params(folder: Path, tracking_uri: str) -> Path:
    """Params over `write_sources` files whose MLflow is the tracking server at `tracking_uri`
    (no local store: `unused` must stay absent)."""
    data = params_dict(write_sources(folder / "data"), folder / "unused")
    data["mlflow"] = {"tracking_uri": tracking_uri}
    return write_params(folder, data)


def copy_version(client: Any, name: str, version: str = "1") -> Any:
    """A new version of registered model `name` with `version`'s files and its recorded
    artifact digests (what loading checks): another version to promote, in one call."""
    import mlflow

    from urgency.models import DIGEST_TAG

    first = client.get_model_version(name, version)
    # MLflow 3 looks a `models:/m-...` source up in the process-wide tracking store, whatever the
    # client's: point it at the client's store for the call (an earlier module may have moved it).
    found = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(client._tracking_client.tracking_uri)
    try:
        return client.create_model_version(
            name, first.source, run_id=first.run_id, tags={DIGEST_TAG: first.tags[DIGEST_TAG]}
        )
    finally:
        mlflow.set_tracking_uri(found)


@pytest.fixture(autouse=True, scope="module")
def _leave_mlflow_uris_as_found() -> Any:
    """Training, loading and tracking servers point MLflow's process-wide tracking and registry
    URIs at a module's own stores; the next module must not find them there."""
    import mlflow

    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    yield
    mlflow.set_tracking_uri(tracking)
    mlflow.set_registry_uri(registry)


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    return write_sources(tmp_path / "data")


@pytest.fixture
def params_file(tmp_path: Path, sources: dict[str, Path]) -> Path:
    return write_params(tmp_path, params_dict(sources, tmp_path / "mlruns"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Train all three heads once on the tiny sources into a temporary MLflow store."""
    from urgency.config import load_params
    from urgency.train import train

    folder = tmp_path_factory.mktemp("trained")
    paths = write_sources(folder / "data")
    params_path = write_params(folder, params_dict(paths, folder / "mlruns"))
    params = load_params(params_path)
    result = train(params, ["urgency", "category", "sentiment"], params_path=params_path, code_folder=PROJECT)
    return {"params": params, "params_path": params_path, "result": result, "folder": folder}


@pytest.fixture(scope="session")
def models(trained: dict[str, Any]) -> dict[str, Any]:
    from urgency.models import load_registered_models

    params = trained["params"]
    heads = ["urgency", "category", "sentiment"]
    return load_registered_models(
        heads,
        tracking_uri=params.mlflow.tracking_uri,
        model_names={head: params.mlflow.model_name(head) for head in heads},
        alias=params.mlflow.champion_alias,
    )


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server on 127.0.0.1 for the session (`tests/postgres.py`)."""
    from tests.postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


SERVICE_RULES: dict[str, Any] = {
    "impact_rules": [{"name": "down", "when": {"service_down": True}, "impact": "high"}],
    "routing": {"default_team": "desk", "triage_team": "triage", "rules": []},
    # High enough that the tiny models' unsure answers go to a person.
    "confidence": {"thresholds": {"urgency": 0.95}, "rules_only_urgency": "medium"},
}


@pytest.fixture(scope="session")
def service_params(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny trained models' params plus a rules file: what the service tests serve."""
    from tests.rules_helpers import rules_dict

    folder = tmp_path_factory.mktemp("service")
    rules = folder / "rules.yaml"
    rules.write_text(yaml.safe_dump(rules_dict(**SERVICE_RULES)))
    data = yaml.safe_load(trained["params_path"].read_text())
    data["scoring"] = {"rules": str(rules)}
    return write_params(folder, data)


# Rules that read sentiment, for a helpdesk that has no sentiment head: the rule must not fire.
TWO_HEAD_RULES: dict[str, Any] = {
    **SERVICE_RULES,
    "confidence": {"thresholds": {"urgency": 0.3, "sentiment": 0.5}, "rules_only_urgency": "medium"},
    "priority_rules": [{"name": "angry", "when": {"sentiment": "negative"}, "raise_by": 1}],
}


@pytest.fixture(scope="session")
def two_heads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A helpdesk with urgency and category labels only (no sentiment source, no `heads.sentiment`
    settings), trained by `urgency train` with no --head: the heads it has labels for."""
    from tests.cli import invoke
    from tests.rules_helpers import rules_dict

    folder = tmp_path_factory.mktemp("two_heads")
    data = params_dict(write_sources(folder / "data"), folder / "mlruns")
    data["data"]["sources"] = [s for s in data["data"]["sources"] if s["name"] != "tweets"]
    del data["heads"]["sentiment"]
    rules = folder / "rules.yaml"
    rules.write_text(yaml.safe_dump(rules_dict(**TWO_HEAD_RULES)))
    data["scoring"] = {"rules": str(rules)}
    params_path = write_params(folder, data)
    trained = invoke("train", "--params", str(params_path))
    assert trained.exit_code == 0, trained.output
    return {"params_path": params_path, "folder": folder, "train_output": trained.output}


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, driven by playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is missing: `make test` installs it (Debian package chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()

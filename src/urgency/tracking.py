"""MLflow set-up and registry helpers shared by training, prediction and promotion."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from urgency.errors import ModelNotFoundError

if TYPE_CHECKING:
    from urgency.config import MlflowParams


def use_tracking(tracking_uri: str, experiment: str, artifact_location: str) -> str:
    """Point MLflow at `tracking_uri` and return the experiment id (created when missing)."""
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    # A tracking server decides where its artifacts go (it serves them to every client).
    remote = tracking_uri.startswith(("http://", "https://"))
    return mlflow.create_experiment(experiment, artifact_location=None if remote else artifact_location)


def git_state(folder: Path) -> tuple[str | None, bool]:
    """The commit the code in `folder` is at, and whether it has uncommitted changes
    ((None, False) outside a git checkout, e.g. an installed package)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None, False
    return commit or None, bool(status.strip())


def register(model_uri: str, name: str, tags: dict[str, str]) -> ModelVersion:
    return mlflow.register_model(model_uri, name, tags=tags)


def alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def set_alias_if_missing(client: MlflowClient, name: str, alias: str, version: str) -> bool:
    """Point `alias` at `version` unless it already points somewhere; True if it was set."""
    if alias_version(client, name, alias) is not None:
        return False
    client.set_registered_model_alias(name, alias, version)
    return True


def export_models(
    client: MlflowClient, model_names: dict[str, str], alias: str, output: Path
) -> dict[str, str]:
    """Copy each head's `alias` version into `output/<head>` (a folder `--model-dir` loads),
    checked against the digests recorded at registration, which go with it
    (`output/<head>/urgency-digests.json`: what loading the folder checks).

    All or nothing: every alias is looked up and every model downloaded and checked into a
    staging folder before `output` changes, so a missing or damaged model leaves `output` as it
    was. Afterwards `output` holds exactly these heads: a head folder an older export left there
    is removed, since `--model-dir` would otherwise load it as a head that has a model."""
    from urgency.config import HEADS, SIGNALS_MODEL
    from urgency.models import DIGEST_TAG, download_verified, write_digest_file

    versions = {}
    for head, name in model_names.items():
        version = alias_version(client, name, alias)
        if version is None:
            raise ModelNotFoundError(f"no {head} model: no model version {name}@{alias} to export")
        versions[head] = version
    output.mkdir(parents=True, exist_ok=True)
    staging = output / ".export.partial"
    if staging.exists():
        _remove_tree(staging)
    staging.mkdir()
    try:
        downloaded = {}
        for head, version in versions.items():
            (staging / head).mkdir()
            folder = download_verified(client, model_names[head], str(version.version), staging / head)
            write_digest_file(folder, json.loads(version.tags[DIGEST_TAG]))
            downloaded[head] = folder
        for head in (*HEADS, SIGNALS_MODEL):
            if head not in downloaded and (output / head).exists():
                _remove_tree(output / head)
        for head, folder in downloaded.items():
            if (output / head).exists():
                _remove_tree(output / head)
            folder.rename(output / head)
    finally:
        if staging.exists():
            _remove_tree(staging)
    return {head: str(version.version) for head, version in versions.items()}


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


def dataset_digest(client: MlflowClient, run_id: str | None, context: str) -> str | None:
    """The digest of the dataset a run logged under `context` (training/validation/testing)."""
    if not run_id:
        return None
    for dataset_input in client.get_run(run_id).inputs.dataset_inputs:
        if any(tag.key == "mlflow.data.context" and tag.value == context for tag in dataset_input.tags):
            return dataset_input.dataset.digest
    return None


def run_metrics(client: MlflowClient, run_id: str | None, prefix: str) -> dict[str, float]:
    """A run's metrics whose names start with `prefix` (e.g. "test_")."""
    if not run_id:
        return {}
    metrics = client.get_run(run_id).data.metrics
    return {name: float(value) for name, value in sorted(metrics.items()) if name.startswith(prefix)}


def export_champions(params: MlflowParams, heads: Sequence[str] | None, output: Path) -> dict[str, str]:
    """`export_models` of the heads' champions on the configured tracking server; `heads` None:
    every head that has a champion (`urgency.models.resolve_registry` decides). The text signals'
    model goes with them when it has one (`DIR/signals`)."""
    use_tracking(params.tracking_uri, params.experiment, params.artifact_location)
    from urgency.config import HEADS, SIGNALS_MODEL
    from urgency.models import registry_client, resolve_registry

    source = resolve_registry(
        heads,
        tracking_uri=params.tracking_uri,
        model_names={name: params.model_name(name) for name in (*HEADS, SIGNALS_MODEL)},
        alias=params.champion_alias,
        signals=True,
    )
    names = {ref.head: params.model_name(ref.head) for ref in source.heads}
    return export_models(registry_client(params.tracking_uri), names, params.champion_alias, output)

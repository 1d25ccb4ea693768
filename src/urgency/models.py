"""Where head models come from: resolve a registry alias or a model folder to pinned models, load them.

The one place that turns "the champions" or "this folder" into loaded models. Every consumer (the
CLI, the service, evaluation, retraining, reports, Dask workers) goes through it:

1. `resolve_registry` / `resolve_dir` -> a `ModelSource`: each head pinned to one exact model
   (a registry alias becomes `models:/<name>/<version>` at that moment);
2. `load_models(source)` loads exactly those models, so the version reported is the version
   loaded, even when the alias moves in between (a promotion during a reload or a cluster run).

`registry_client` is the one way to talk to the MLflow registry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from urgency.errors import ModelNotFoundError

if TYPE_CHECKING:
    from mlflow import MlflowClient


@dataclass(frozen=True)
class HeadModel:
    """One loaded head model: a pyfunc that maps a `text` column to one probability per label."""

    head: str
    labels: tuple[str, ...]
    model: Any  # mlflow.pyfunc.PyFuncModel
    uri: str
    version: str | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class HeadRef:
    """One head pinned to one model: a `models:/<name>/<version>` URI or a model folder."""

    head: str
    uri: str
    version: str | None = None
    run_id: str | None = None
    registry_name: str | None = None
    alias: str | None = None


@dataclass(frozen=True)
class ModelSource:
    """The head models to load, pinned. Hashable: Dask workers keep models loaded under it."""

    heads: tuple[HeadRef, ...]
    tracking_uri: str | None = None

    def describe(self) -> dict[str, str]:
        return {ref.head: ref.uri for ref in self.heads}

    def versions(self) -> dict[str, str]:
        """Head -> registry version (or the folder's URI): what a run or the service reports."""
        return {ref.head: ref.version or ref.uri for ref in self.heads}


def registry_client(tracking_uri: str) -> MlflowClient:
    """A client of the tracking server that is also the registry (the project's one setting)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def resolve_registry(
    heads: Sequence[str], *, tracking_uri: str, model_names: Mapping[str, str], alias: str
) -> ModelSource:
    """Pin each head's `alias` to the version it points at now."""
    from urgency.tracking import alias_version

    client = registry_client(tracking_uri)
    refs = []
    for head in heads:
        name = model_names[head]
        version = alias_version(client, name, alias)
        if version is None:
            raise ModelNotFoundError(
                f"no model version {name}@{alias} in the registry at {tracking_uri}; "
                "run `urgency train` first, or pass --model-dir"
            )
        refs.append(
            HeadRef(
                head,
                f"models:/{name}/{version.version}",
                version=str(version.version),
                run_id=version.run_id,
                registry_name=name,
                alias=alias,
            )
        )
    return ModelSource(tuple(refs), tracking_uri=tracking_uri)


def resolve_dir(model_dir: Path, heads: Sequence[str]) -> ModelSource:
    """One MLflow model folder per head (`DIR/<head>`), as `--model-dir` gives them."""
    refs = []
    for head in heads:
        folder = model_dir.resolve() / head
        if not (folder / "MLmodel").exists():
            raise ModelNotFoundError(
                f"no MLflow model for head {head!r} at {folder} (expected {folder}/MLmodel)"
            )
        refs.append(HeadRef(head, str(folder)))
    return ModelSource(tuple(refs))


def resolve(
    heads: Sequence[str],
    *,
    model_dir: Path | None,
    tracking_uri: str,
    model_names: Mapping[str, str],
    alias: str,
) -> ModelSource:
    """A model folder when given, else the registry alias."""
    if model_dir is not None:
        return resolve_dir(model_dir, heads)
    return resolve_registry(heads, tracking_uri=tracking_uri, model_names=model_names, alias=alias)


def load_models(source: ModelSource) -> dict[str, HeadModel]:
    """Load exactly the pinned models of `source`, head -> model."""
    if source.tracking_uri:
        import mlflow

        # A pinned `models:/name/version` is read through MLflow's registry setting.
        mlflow.set_tracking_uri(source.tracking_uri)
        mlflow.set_registry_uri(source.tracking_uri)
    return {
        ref.head: load_head_model(ref.uri, version=ref.version, run_id=ref.run_id) for ref in source.heads
    }


def load_registered_models(
    heads: Sequence[str], *, tracking_uri: str, model_names: Mapping[str, str], alias: str
) -> dict[str, HeadModel]:
    """The models `alias` points at now, each pinned to its version before loading."""
    return load_models(
        resolve_registry(heads, tracking_uri=tracking_uri, model_names=model_names, alias=alias)
    )


def load_model_dir(model_dir: Path, heads: Sequence[str]) -> dict[str, HeadModel]:
    """The models of a folder holding one MLflow model folder per head (`DIR/<head>`)."""
    return load_models(resolve_dir(model_dir, heads))


def load_head_model(uri: str, *, version: str | None = None, run_id: str | None = None) -> HeadModel:
    """Load one head model from any MLflow model URI (registry, run or local folder).

    Any failure to load is a ModelNotFoundError naming the URI: a missing model, and as much a
    corrupt one (a truncated pickle: UnpicklingError, EOFError; a class that moved or a library
    missing: AttributeError, ImportError), so the CLI exits 5 and a reload answers 503 while the
    old models keep serving."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    try:
        model = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as error:
        raise ModelNotFoundError(f"cannot load model {uri}: {error}") from None
    except Exception as error:  # whatever unpickling a damaged file raises
        reason = f"{type(error).__name__}: {error}"
        raise ModelNotFoundError(
            f"cannot load model {uri}: damaged, or saved by other code ({reason})"
        ) from None
    metadata = model.metadata.metadata or {}
    if "labels" not in metadata or "head" not in metadata:
        raise ModelNotFoundError(f"{uri} is not an urgency head model (no head/labels metadata)")
    return HeadModel(
        head=metadata["head"],
        labels=tuple(metadata["labels"]),
        model=model,
        uri=uri,
        version=version,
        run_id=run_id or model.metadata.run_id,
    )

"""Where head models come from: resolve a registry alias or a model folder to pinned models, load them.

The one place that turns "the champions" or "this folder" into loaded models. Every consumer (the
CLI, the service, evaluation, retraining, reports, Dask workers) goes through it:

1. `resolve_registry` / `resolve_dir` -> a `ModelSource`: each head pinned to one exact model
   (a registry alias becomes `models:/<name>/<version>` at that moment);
2. `load_models(source)` loads exactly those models, so the version reported is the version
   loaded, even when the alias moves in between (a promotion during a reload or a cluster run).

Which heads there are is decided here, once (`resolve`): the heads asked for (each must have a
model: a head asked for with none is a `ModelNotFoundError` naming it), else every head that has
one - a champion (the alias) in the registry, or a `DIR/<head>` folder under `--model-dir`. A
helpdesk without sentiment labels trains, predicts, scores and serves urgency and category
alone; a head with no model is simply absent downstream, never an error.

The text signals' model (`config.SIGNALS_MODEL`, registered as `<model_prefix>-signals`, or a
`DIR/signals` folder) is resolved, pinned, digest-checked and loaded the same way, under the key
`signals`, by the callers that score (`signals=True`): optional, so without one there are no text
signals and nothing else changes.

`registry_client` is the one way to talk to the MLflow registry.

Loading a model runs code from its files (pickles, cloudpickled pyfuncs): the trust boundary.
Registration (`urgency.train.train_head`) records a SHA-256 of every file of the model on its
registry version (tag `artifact_sha256`); `export_models` copies it beside the files of an
exported folder (`urgency-digests.json`). `load_models` compares the files with that record
before anything is unpickled, and loads exactly the bytes it checked: a registry version is
downloaded to a local folder, checked, then loaded from there. A differing, missing or extra
file, or no record at all, is a `ModelNotFoundError`. A version registered before digests were
recorded is loaded only after someone vouches for its files (`record_version_digests`,
`urgency record-digests`), which is tagged with who, when and why.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from urgency.config import HEADS, SIGNALS_MODEL
from urgency.errors import ModelNotFoundError

if TYPE_CHECKING:
    from mlflow import MlflowClient

# The model version tag holding {file path relative to the model folder: sha256}, as JSON.
DIGEST_TAG = "artifact_sha256"
# The same record in an exported model folder (`DIR/<head>/urgency-digests.json`).
DIGEST_FILE = "urgency-digests.json"
# Not part of the record: the digest file itself, and the YAML note MLflow writes into a model
# version's files on some downloads and not on others (a tracking server's proxy leaves it out);
# neither is code that loading runs.
UNCHECKED_FILES = frozenset({DIGEST_FILE, "registered_model_meta"})


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
    heads: Sequence[str] | None,
    *,
    tracking_uri: str,
    model_names: Mapping[str, str],
    alias: str,
    signals: bool = False,
) -> ModelSource:
    """Pin each head's `alias` to the version it points at now. `heads` None: every head whose
    alias is set (the others have no model and are left out); a head asked for must have one.
    `signals`: also the signals model (`model_names[SIGNALS_MODEL]`) when it has the alias."""
    from urgency.tracking import alias_version

    client = registry_client(tracking_uri)
    refs = []
    # Not asked for: every head the caller has a registry name for.
    for head in [h for h in HEADS if h in model_names] if heads is None else heads:
        name = model_names[head]
        version = alias_version(client, name, alias)
        if version is None:
            if heads is None:
                continue  # not asked for: a head without a model is simply absent
            raise ModelNotFoundError(
                f"no {head} model: no model version {name}@{alias} in the registry at {tracking_uri}; "
                f"train it (`urgency train --head {head}`, which needs {head} labels), pass "
                "--model-dir, or leave the head out"
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
    if not refs:
        raise ModelNotFoundError(
            f"no head has a model version @{alias} in the registry at {tracking_uri} (looked for "
            f"{', '.join(model_names[head] for head in HEADS if head in model_names)}); run "
            "`urgency train` first, or pass --model-dir"
        )
    name = model_names.get(SIGNALS_MODEL)
    version = alias_version(client, name, alias) if signals and name else None
    if version is not None:  # optional: no signals model, no text signals
        uri = f"models:/{name}/{version.version}"
        refs.append(HeadRef(SIGNALS_MODEL, uri, str(version.version), version.run_id, name, alias))
    return ModelSource(tuple(refs), tracking_uri=tracking_uri)


def resolve_dir(model_dir: Path, heads: Sequence[str] | None = None, *, signals: bool = False) -> ModelSource:
    """One MLflow model folder per head (`DIR/<head>`), as `--model-dir` gives them. `heads`
    None: every head with a folder there; a head asked for must have one. `signals`: also
    `DIR/signals` when there is one."""
    root = model_dir.resolve()
    chosen = [head for head in HEADS if (root / head / "MLmodel").exists()] if heads is None else heads
    refs = []
    for head in chosen:
        folder = root / head
        if not (folder / "MLmodel").exists():
            raise ModelNotFoundError(
                f"no {head} model: no MLflow model for head {head!r} at {folder} (expected {folder}/MLmodel)"
            )
        refs.append(HeadRef(head, str(folder)))
    if not refs:
        raise ModelNotFoundError(
            f"no head model in {root} (expected {root}/<head>/MLmodel for a head of {', '.join(HEADS)}); "
            "write one with `urgency export-models`"
        )
    if signals and (root / SIGNALS_MODEL / "MLmodel").exists():
        refs.append(HeadRef(SIGNALS_MODEL, str(root / SIGNALS_MODEL)))
    return ModelSource(tuple(refs))


def resolve(
    heads: Sequence[str] | None,
    *,
    model_dir: Path | None,
    tracking_uri: str,
    model_names: Mapping[str, str],
    alias: str,
    signals: bool = False,
) -> ModelSource:
    """The one rule for which heads there are: `heads` when asked for (each must have a model),
    else every head with a model - a folder under `model_dir` when given, else a version at the
    registry alias. Everything downstream (predict, score, evaluate, export, serve, reports)
    works on the heads of the returned source. `signals` (the callers that score): the signals
    model too, when there is one."""
    if model_dir is not None:
        return resolve_dir(model_dir, heads, signals=signals)
    return resolve_registry(
        heads, tracking_uri=tracking_uri, model_names=model_names, alias=alias, signals=signals
    )


def load_models(source: ModelSource) -> dict[str, HeadModel]:
    """Load exactly the pinned models of `source`, head -> model, each checked against the
    digests recorded at registration before it is unpickled."""
    client = None
    if source.tracking_uri:
        import mlflow

        # A pinned `models:/name/version` is read through MLflow's registry setting.
        mlflow.set_tracking_uri(source.tracking_uri)
        mlflow.set_registry_uri(source.tracking_uri)
        client = registry_client(source.tracking_uri)
    return {ref.head: _load_verified(ref, client) for ref in source.heads}


def _load_verified(ref: HeadRef, client: MlflowClient | None) -> HeadModel:
    if ref.registry_name is None or ref.version is None:  # a model folder
        folder = Path(ref.uri)
        verify_digests(folder, _read_digest_file(folder), f"model folder {folder}")
        return load_head_model(ref.uri, version=ref.version, run_id=ref.run_id, path=folder)
    if client is None:
        raise ModelNotFoundError(f"{ref.uri}: no registry to read it from")
    # The files checked are the files loaded: downloaded once, checked, loaded from here.
    with tempfile.TemporaryDirectory(prefix="urgency-model-") as staging:
        folder = download_verified(client, ref.registry_name, ref.version, Path(staging))
        return load_head_model(ref.uri, version=ref.version, run_id=ref.run_id, path=folder)


def artifact_digests(folder: Path) -> dict[str, str]:
    """Every file under `folder` (its path relative to `folder`, with `/`) -> its SHA-256, but
    `UNCHECKED_FILES`."""
    digests = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and relative not in UNCHECKED_FILES:
            digests[relative] = _sha256(path)
    return digests


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digests_json(digests: Mapping[str, str]) -> str:
    """The record as stored in the tag and the digest file: compact JSON, sorted."""
    return json.dumps(dict(digests), sort_keys=True, separators=(",", ":"))


def recorded_digests(uri: str) -> str:
    """The record (`digests_json`) of the model at `uri` as it is now: what registration tags
    the new version with (`urgency.train.train_head`)."""
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="urgency-digest-") as staging:
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=staging))
        return digests_json(artifact_digests(folder))


def download_verified(client: MlflowClient, name: str, version: str, destination: Path) -> Path:
    """Download registry version `name` `version` into `destination` and check its files
    against the digests recorded at registration; returns the model folder."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    what = f"{name} v{version}"
    try:
        recorded = client.get_model_version(name, version).tags.get(DIGEST_TAG)
        # Where the version's files are, asked of this client's registry: a `models:/` URI
        # would be resolved against MLflow's global stores, which may be another store.
        location = client.get_model_version_download_uri(name, version)
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(destination)))
    except (MlflowException, OSError) as error:
        raise ModelNotFoundError(f"cannot download model {what}: {error}") from None
    verify_digests(folder, _parse_digests(recorded, what), what)
    return folder


def record_version_digests(
    client: MlflowClient, name: str, version: str, *, by: str, reason: str
) -> dict[str, str]:
    """Vouch for registry version `name` `version`, registered before digests were recorded: the
    digests of its files as they are now become its record, tagged with who, when and why.

    Only a version without a record: replacing a record would let a tampered file pass. Nothing
    is unpickled here; the person vouching answers for the files."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    what = f"{name} v{version}"
    try:
        existing = client.get_model_version(name, version).tags.get(DIGEST_TAG)
    except MlflowException as error:
        raise ModelNotFoundError(f"no model version {what}: {error}") from None
    if existing is not None:
        raise ModelNotFoundError(
            f"{what} already has artifact digests recorded (tag {DIGEST_TAG}); a record is never "
            "replaced. If its files changed, register the model again with `urgency train`"
        )
    with tempfile.TemporaryDirectory(prefix="urgency-digest-") as staging:
        try:
            location = client.get_model_version_download_uri(name, version)
            folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=staging))
        except (MlflowException, OSError) as error:
            raise ModelNotFoundError(f"cannot download model {what}: {error}") from None
        digests = artifact_digests(folder)
    tags = {
        DIGEST_TAG: digests_json(digests),
        f"{DIGEST_TAG}_recorded_by": by,
        f"{DIGEST_TAG}_recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        f"{DIGEST_TAG}_reason": reason,
    }
    # The record last: a version never carries a record without who vouched for it.
    for key, value in sorted(tags.items(), key=lambda item: item[0] == DIGEST_TAG):
        client.set_model_version_tag(name, version, key, value)
    return digests


def verify_digests(folder: Path, recorded: dict[str, str] | None, what: str) -> None:
    """Refuse (`ModelNotFoundError`) a model whose files are not exactly those recorded at
    registration, or that has no record."""
    if recorded is None:
        raise ModelNotFoundError(
            f"{what} has no artifact digests recorded at registration (tag {DIGEST_TAG}, or "
            f"{DIGEST_FILE} in an exported folder): refusing to load it, because loading a model "
            "runs code from its files. Register it again with `urgency train` (or export the "
            "champions again with `urgency export-models`); or, if you trust its files as they "
            "are now, record them with `urgency record-digests --head HEAD --version N --reason ...`"
        )
    found = artifact_digests(folder)
    for path in sorted(set(recorded) | set(found)):
        if path not in found:
            problem = "is missing"
        elif path not in recorded:
            problem = "was not there at registration"
        elif found[path] != recorded[path]:
            problem = "does not match the digest recorded at registration"
        else:
            continue
        raise ModelNotFoundError(
            f"model file {path} of {what} {problem}: refusing to load it (it may have been tampered with)"
        )


def _parse_digests(value: str | None, what: str) -> dict[str, str] | None:
    if value is None:
        return None
    try:
        digests = json.loads(value)
    except ValueError:
        digests = None
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        raise ModelNotFoundError(
            f"the artifact digests recorded for {what} are not readable: refusing to load it"
        )
    return digests


def _read_digest_file(folder: Path) -> dict[str, str] | None:
    path = folder / DIGEST_FILE
    if not path.exists():
        return None
    return _parse_digests(path.read_text(encoding="utf-8"), f"model folder {folder}")


def write_digest_file(folder: Path, digests: Mapping[str, str]) -> None:
    """The record of an exported model folder (`urgency.tracking.export_models`)."""
    (folder / DIGEST_FILE).write_text(digests_json(digests) + "\n", encoding="utf-8")


def load_version(head: str, name: str, version: Any, tracking_uri: str) -> HeadModel:
    """One registered version (an MLflow `ModelVersion`) of `head`'s model `name`, loaded with its
    digests checked: what comparing, distilling and judging a version read."""
    ref = HeadRef(
        head=head,
        uri=f"models:/{name}/{version.version}",
        version=str(version.version),
        run_id=version.run_id,
        registry_name=name,
    )
    return load_models(ModelSource(heads=(ref,), tracking_uri=tracking_uri))[head]


def load_registered_models(
    heads: Sequence[str] | None, *, tracking_uri: str, model_names: Mapping[str, str], alias: str
) -> dict[str, HeadModel]:
    """The models `alias` points at now, each pinned to its version before loading."""
    return load_models(
        resolve_registry(heads, tracking_uri=tracking_uri, model_names=model_names, alias=alias)
    )


def load_model_dir(model_dir: Path, heads: Sequence[str] | None = None) -> dict[str, HeadModel]:
    """The models of a folder holding one MLflow model folder per head (`DIR/<head>`)."""
    return load_models(resolve_dir(model_dir, heads))


class ModelLoadError(Exception):
    """MLflow could not load a model (its MlflowException, without importing MLflow here)."""


def _load_pyfunc(uri: str) -> Any:
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as error:
        raise ModelLoadError(str(error)) from None


@dataclass(frozen=True)
class _ModelMetadata:
    metadata: dict[str, Any]
    run_id: str | None


@dataclass(frozen=True)
class PickledSklearnModel:
    """A baseline model folder's pipeline with what `HeadModel` reads of a pyfunc: `predict`
    (the flavor's `predict_fn`) and `metadata`."""

    pipeline: Any
    predict_fn: str
    metadata: _ModelMetadata

    def predict(self, frame: Any) -> Any:
        return getattr(self.pipeline, self.predict_fn)(frame)


def _load_pickled_sklearn(folder: Path) -> PickledSklearnModel | None:
    """A model folder saved by `mlflow.sklearn` in the pickle format, loaded as MLflow's sklearn
    flavor loads it (the pickle) but without importing MLflow: that import is 1.6 s of every
    batch command's start-up. None for any other kind of model (MLflow loads those)."""
    import pickle

    import yaml

    spec = yaml.safe_load((folder / "MLmodel").read_text())
    pyfunc = spec.get("flavors", {}).get("python_function", {})
    sklearn = spec.get("flavors", {}).get("sklearn", {})
    if pyfunc.get("loader_module") != "mlflow.sklearn" or sklearn.get("serialization_format") != "pickle":
        return None
    with (folder / sklearn["pickled_model"]).open("rb") as file:
        pipeline = pickle.load(file)
    return PickledSklearnModel(
        pipeline=pipeline,
        predict_fn=pyfunc.get("predict_fn") or "predict",
        metadata=_ModelMetadata(metadata=spec.get("metadata") or {}, run_id=spec.get("run_id")),
    )


def load_head_model(
    uri: str, *, version: str | None = None, run_id: str | None = None, path: Path | None = None
) -> HeadModel:
    """Load one head model from any MLflow model URI (run or local folder), or from `path`
    (reported as `uri`). No digest check: only for a model this process has just logged
    (training's evaluation) or files already checked; everything else uses `load_models`.

    Any failure to load is a ModelNotFoundError naming the URI: a missing model, and as much a
    corrupt one (a truncated pickle: UnpicklingError, EOFError; a class that moved or a library
    missing: AttributeError, ImportError), so the CLI exits 5 and a reload answers 503 while the
    old models keep serving."""
    try:
        model = (_load_pickled_sklearn(path) if path is not None else None) or _load_pyfunc(
            str(path) if path is not None else uri
        )
    except (ModelLoadError, OSError) as error:
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

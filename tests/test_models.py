"""Model resolution and loading: an alias or a folder is pinned first, then exactly that is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import copy_version
from urgency.errors import ModelNotFoundError
from urgency.models import (
    PickledSklearnModel,
    artifact_digests,
    load_model_dir,
    load_models,
    load_registered_models,
    registry_client,
    resolve,
    resolve_registry,
    write_digest_file,
)
from urgency.predict import predict_frame
from urgency.tracking import export_models

TICKETS = pd.DataFrame({"subject": ["server down", "thanks"], "body": ["production outage", "great help"]})


def _predict(models: dict[str, Any]) -> pd.DataFrame:
    return predict_frame(models, TICKETS, subject_column="subject", body_column="body", max_text_chars=1000)


def test_registry_and_model_dir_give_the_same_predictions(
    trained: dict[str, Any], models: dict[str, Any], tmp_path: Path
) -> None:
    params = trained["params"]
    names = {head: params.mlflow.model_name(head) for head in models}
    client = registry_client(params.mlflow.tracking_uri)
    exported = export_models(client, names, "champion", tmp_path / "models")
    assert exported == {"urgency": "1", "category": "1", "sentiment": "1"}
    from_dir = load_model_dir(tmp_path / "models", list(models))
    pd.testing.assert_frame_equal(_predict(from_dir), _predict(models))
    source = resolve(
        list(models), model_dir=tmp_path / "models", tracking_uri="unused", model_names=names, alias="x"
    )
    assert source.versions() == {head: str((tmp_path / "models" / head).resolve()) for head in models}


def test_a_baseline_folder_loads_without_mlflow_as_mlflow_loads_it(
    trained: dict[str, Any], models: dict[str, Any], tmp_path: Path
) -> None:
    """The pickled scikit-learn folder read directly (`PickledSklearnModel`, no MLflow import)
    predicts exactly what MLflow's pyfunc of the same folder predicts, and carries the same
    metadata; the process never imports MLflow for it."""
    import subprocess
    import sys

    import mlflow.pyfunc

    params = trained["params"]
    names = {head: params.mlflow.model_name(head) for head in models}
    export_models(registry_client(params.mlflow.tracking_uri), names, "champion", tmp_path / "models")
    ours = load_model_dir(tmp_path / "models", list(models))
    frame = pd.DataFrame({"text": ["server down", "<p>thanks &amp; bye</p>", ""]})
    for head, model in ours.items():
        assert isinstance(model.model, PickledSklearnModel)
        theirs = mlflow.pyfunc.load_model(str(tmp_path / "models" / head))
        assert (model.model.predict(frame) == theirs.predict(frame)).all()
        assert model.model.metadata.metadata == theirs.metadata.metadata
        assert model.run_id == theirs.metadata.run_id
    script = (
        "import sys; from pathlib import Path; from urgency.models import load_model_dir;"
        f"load_model_dir(Path({str(tmp_path / 'models')!r})); print('mlflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_missing_models_are_clear_errors(trained: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"no MLflow model for head 'urgency'"):
        load_model_dir(tmp_path, ["urgency"])
    params = trained["params"]
    with pytest.raises(ModelNotFoundError, match="ticket-urgency@nope"):
        load_registered_models(
            ["urgency"],
            tracking_uri=params.mlflow.tracking_uri,
            model_names={"urgency": "ticket-urgency"},
            alias="nope",
        )


def test_the_version_reported_is_the_version_loaded_when_the_alias_moves(trained: dict[str, Any]) -> None:
    """Resolve pins `name@alias` to a version; a move of the alias before the load (a promotion
    during a reload) changes nothing about what is loaded."""
    params = trained["params"]
    uri = params.mlflow.tracking_uri
    client = registry_client(uri)
    name = params.mlflow.model_name("urgency")
    first = client.get_model_version(name, "1")
    second = copy_version(client, name)
    try:
        client.set_registered_model_alias(name, "pinned-test", "1")
        source = resolve_registry(
            ["urgency"], tracking_uri=uri, model_names={"urgency": name}, alias="pinned-test"
        )
        client.set_registered_model_alias(name, "pinned-test", second.version)  # moved before the load
        loaded = load_models(source)["urgency"]

        assert source.versions() == {"urgency": "1"}
        assert (loaded.version, loaded.uri, loaded.run_id) == ("1", f"models:/{name}/1", first.run_id)
        moved = resolve_registry(
            ["urgency"], tracking_uri=uri, model_names={"urgency": name}, alias="pinned-test"
        )
        assert load_models(moved)["urgency"].version == str(second.version)
    finally:  # the session's registry is shared: leave it as it was
        client.delete_model_version(name, second.version)


def _exported_with_a_corrupt_pickle(trained: dict[str, Any], folder: Path, head: str = "category") -> Path:
    """The champions exported to `folder`, `head`'s pickle cut in half (a disk that filled up)."""
    params = trained["params"]
    names = {name: params.mlflow.model_name(name) for name in ("urgency", "category", "sentiment")}
    export_models(registry_client(params.mlflow.tracking_uri), names, "champion", folder)
    pickles = sorted((folder / head).rglob("*.pkl"))
    assert pickles, sorted((folder / head).rglob("*"))
    for pickle in pickles:
        pickle.write_bytes(pickle.read_bytes()[: pickle.stat().st_size // 2])
    # Damaged before its digests were taken (a disk that filled during the export): the digests
    # match, so it is the unpickling that fails, not the trust check.
    write_digest_file(folder / head, artifact_digests(folder / head))
    return folder


def test_a_corrupt_model_is_model_not_found(trained: dict[str, Any], tmp_path: Path) -> None:
    """A truncated model.pkl once surfaced as UnpicklingError: exit 1, and 500 from a reload."""
    folder = _exported_with_a_corrupt_pickle(trained, tmp_path / "models")
    with pytest.raises(ModelNotFoundError, match=r"cannot load model .*category.*damaged") as raised:
        load_model_dir(folder, ["urgency", "category"])
    assert raised.value.exit_code == 5

    from tests.cli import runner
    from urgency.cli import app

    tickets = tmp_path / "tickets.csv"
    TICKETS.to_csv(tickets, index=False)
    args = ["--params", str(trained["params_path"]), "--model-dir", str(folder)]
    result = runner.invoke(app, ["predict", *args, "-i", str(tickets), "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 5, result.output
    assert "cannot load model" in result.output and "category" in result.output
    assert not (tmp_path / "out.csv").exists()


# ---------------------------------------------------------------------------------------------
# The trust boundary: loading runs code from a model's files, so they are checked first.


class _Planted:
    """A pickle that creates `marker` when it is unpickled: code run by loading a model."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _plant(model_file: Path, marker: Path) -> None:
    import pickle

    model_file.write_bytes(pickle.dumps(_Planted(marker)))


def test_a_registered_model_loads_only_with_the_files_it_was_registered_with(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    """A version whose files (in the artifact store) changed after registration is refused before
    anything is unpickled; a version without recorded digests is refused too."""
    import mlflow.artifacts

    from urgency.models import DIGEST_TAG, load_head_model

    params = trained["params"]
    uri = params.mlflow.tracking_uri
    client = registry_client(uri)
    name = params.mlflow.model_name("urgency")
    first = client.get_model_version(name, "1")
    location = client.get_model_version_download_uri(name, "1")
    files = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(tmp_path)))
    copy = client.create_model_version(name, str(files), tags={DIGEST_TAG: first.tags[DIGEST_TAG]})
    bare = client.create_model_version(name, str(files))  # as registered before digests were
    names = {"urgency": name}
    try:
        client.set_registered_model_alias(name, "digest-test", copy.version)
        loaded = load_registered_models(["urgency"], tracking_uri=uri, model_names=names, alias="digest-test")
        assert loaded["urgency"].version == str(copy.version)

        marker = tmp_path / "unpickled"
        _plant(files / "model.pkl", marker)
        message = (
            rf"model file model\.pkl of {name} v{copy.version} does not match the digest recorded "
            r"at registration: refusing to load it \(it may have been tampered with\)"
        )
        with pytest.raises(ModelNotFoundError, match=message):
            load_registered_models(["urgency"], tracking_uri=uri, model_names=names, alias="digest-test")
        assert not marker.exists()
        # The planted file does run code when loaded unchecked: the check is what stopped it.
        with pytest.raises(ModelNotFoundError):
            load_head_model(str(files))
        assert marker.exists()

        client.set_registered_model_alias(name, "digest-test", bare.version)
        with pytest.raises(ModelNotFoundError, match=rf"{name} v{bare.version} has no artifact digests"):
            load_registered_models(["urgency"], tracking_uri=uri, model_names=names, alias="digest-test")
    finally:  # the session's registry is shared: leave it as it was
        client.delete_registered_model_alias(name, "digest-test")
        client.delete_model_version(name, copy.version)
        client.delete_model_version(name, bare.version)


def test_an_operator_vouches_for_a_version_registered_before_digests(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    """`urgency record-digests` records the files of a version without a record, with who and
    why, after which it loads; a version that has a record keeps it (exit 5)."""
    import mlflow.artifacts

    from tests.cli import invoke
    from urgency.models import DIGEST_TAG

    params = trained["params"]
    uri = params.mlflow.tracking_uri
    client = registry_client(uri)
    name = params.mlflow.model_name("urgency")
    location = client.get_model_version_download_uri(name, "1")
    files = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(tmp_path)))
    bare = client.create_model_version(name, str(files))  # as registered before digests were
    names = {"urgency": name}
    vouch = ("record-digests", "--head", "urgency", "--params", str(trained["params_path"]))
    try:
        client.set_registered_model_alias(name, "digest-test", bare.version)
        result = invoke(*vouch, "--version", bare.version, "--reason", "checked by hand", "--by", "ops")
        assert result.exit_code == 0, result.output
        assert f"{name} v{bare.version}: digests of" in result.output
        tags = client.get_model_version(name, bare.version).tags
        assert tags[f"{DIGEST_TAG}_recorded_by"] == "ops"
        assert tags[f"{DIGEST_TAG}_reason"] == "checked by hand"
        loaded = load_registered_models(["urgency"], tracking_uri=uri, model_names=names, alias="digest-test")
        assert loaded["urgency"].version == str(bare.version)

        again = invoke(*vouch, "--version", bare.version, "--reason", "again")
        assert again.exit_code == 5
        assert "already has artifact digests recorded" in again.output
        assert client.get_model_version(name, bare.version).tags[DIGEST_TAG] == tags[DIGEST_TAG]
        missing = invoke(*vouch, "--version", "999", "--reason", "x")
        assert missing.exit_code == 5 and "no model version" in missing.output
    finally:  # the session's registry is shared: leave it as it was
        client.delete_registered_model_alias(name, "digest-test")
        client.delete_model_version(name, bare.version)


def test_an_exported_folder_loads_only_with_the_files_it_was_exported_with(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    import json

    from urgency.models import DIGEST_FILE, artifact_digests

    params = trained["params"]
    client = registry_client(params.mlflow.tracking_uri)
    folder = tmp_path / "models"
    export_models(client, {"urgency": params.mlflow.model_name("urgency")}, "champion", folder)
    recorded = json.loads((folder / "urgency" / DIGEST_FILE).read_text())
    assert recorded == artifact_digests(folder / "urgency") and "model.pkl" in recorded
    assert load_model_dir(folder, ["urgency"])["urgency"].labels

    marker = tmp_path / "unpickled"
    _plant(folder / "urgency" / "model.pkl", marker)
    with pytest.raises(ModelNotFoundError, match=r"model file model\.pkl of model folder .* does not match"):
        load_model_dir(folder, ["urgency"])
    assert not marker.exists()
    (folder / "urgency" / DIGEST_FILE).unlink()
    with pytest.raises(ModelNotFoundError, match="has no artifact digests recorded"):
        load_model_dir(folder, ["urgency"])
    assert not marker.exists()
    (folder / "urgency" / "extra.py").write_text("")
    (folder / "urgency" / DIGEST_FILE).write_text(json.dumps(recorded))
    with pytest.raises(ModelNotFoundError, match=r"model file extra\.py .* was not there at registration"):
        load_model_dir(folder, ["urgency"])


def test_the_heads_are_those_asked_for_else_those_with_a_model(tmp_path: Path) -> None:
    """The one rule (`resolve`): no heads asked for -> every head with a model; a head asked for
    must have one, and the error names it; no model at all is an error too."""
    folder = tmp_path / "models"
    for head in ("urgency", "category"):
        (folder / head).mkdir(parents=True)
        (folder / head / "MLmodel").write_text("flavors: {}\n")
    found = resolve(None, model_dir=folder, tracking_uri="unused", model_names={}, alias="champion")
    assert [ref.head for ref in found.heads] == ["urgency", "category"]
    asked = resolve(["category"], model_dir=folder, tracking_uri="unused", model_names={}, alias="champion")
    assert [ref.head for ref in asked.heads] == ["category"]
    with pytest.raises(ModelNotFoundError, match="no sentiment model"):
        resolve(["sentiment"], model_dir=folder, tracking_uri="unused", model_names={}, alias="champion")
    with pytest.raises(ModelNotFoundError, match="no head model in"):
        resolve(None, model_dir=tmp_path / "empty", tracking_uri="unused", model_names={}, alias="champion")

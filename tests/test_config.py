from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import PROJECT, params_dict, write_params
from urgency.config import Params, load_params
from urgency.errors import ParamsError


def test_demo_params_load_and_resolve_paths() -> None:
    params = load_params(PROJECT / "params.yaml")
    assert [s.name for s in params.data.sources][:2] == ["support_tickets_synthetic", "jira_issues_priority"]
    assert all(source.path.is_absolute() for source in params.data.sources)
    assert (
        params.data.sources[0].path
        == (PROJECT.parent / "shared/data/support_tickets_synthetic.csv").resolve()
    )
    assert params.mlflow.tracking_uri == f"sqlite:///{PROJECT / 'mlruns/mlflow.db'}"
    # YAML integer keys are compared as text.
    coded = next(s for s in params.data.sources if s.name == "it_helpdesk_coded")
    assert coded.labels["urgency"].mapping == {"0": "high", "1": "high", "2": "medium", "3": "low"}


def test_params_are_frozen() -> None:
    params = load_params(PROJECT / "params.yaml")
    with pytest.raises(ValidationError):
        params.splits.seed = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(trainig={}), "trainig: unknown key"),
        (
            lambda d: d["data"]["sources"][0]["columns"].update(bodyy="x"),
            "data.sources.0.columns.bodyy: unknown key",
        ),
        (lambda d: d["heads"]["urgency"]["baseline"].update(C=-1), "heads.urgency.baseline.C"),
        (lambda d: d["heads"]["urgency"].update(labels=["high", "low"]), "urgency.labels must be"),
        (
            lambda d: d["data"]["sources"][0]["labels"]["urgency"]["mapping"].update(P4="urgent"),
            "maps onto ['urgent']",
        ),
        (lambda d: d["data"]["sources"].append(dict(d["data"]["sources"][0])), "repeated: tickets"),
        # One promotion policy: the older per-command keys say where they went.
        (
            lambda d: d.update(training={"promotion_margin": 0.02}),
            "training.promotion_margin is now promotion.min_macro_f1_gain",
        ),
        (lambda d: d.update(retrain={"max_recall_drop": 0.1}), "retrain.max_recall_drop is now promotion."),
        # One description of an export: the per-command column keys name the source instead.
        (
            lambda d: d.update(predict={"body_column": "text"}),
            "use the source's columns.body in data.sources",
        ),
        (lambda d: d.update(retrain={"columns": {"body": "text"}}), "retrain.columns is gone"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, sources: dict[str, Path], edit, expected: str) -> None:
    data = params_dict(sources, tmp_path / "mlruns")
    edit(data)
    with pytest.raises(ParamsError) as error:
        load_params(write_params(tmp_path, data))
    assert expected in str(error.value)
    assert "params.yaml" in str(error.value)


def test_missing_and_broken_params_files(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(ParamsError, match="mapping of sections"):
        load_params(scalar)


def test_relative_paths_follow_the_params_file(tmp_path: Path, sources: dict[str, Path]) -> None:
    data = params_dict(sources, tmp_path / "mlruns")
    data["data"]["sources"][0]["path"] = "data/urgency.csv"
    data["mlflow"] = {"tracking_uri": "sqlite:///store/m.db", "artifact_location": "store/art"}
    params = load_params(write_params(tmp_path, data))
    assert params.data.sources[0].path == sources["urgency"]
    assert params.mlflow.tracking_uri == f"sqlite:///{tmp_path / 'store/m.db'}"
    assert params.mlflow.artifact_location == (tmp_path / "store/art").as_uri()


def test_server_tracking_uri_is_kept(tmp_path: Path, sources: dict[str, Path]) -> None:
    data = params_dict(sources, tmp_path / "mlruns")
    data["mlflow"]["tracking_uri"] = "http://127.0.0.1:5000"
    assert load_params(write_params(tmp_path, data)).mlflow.tracking_uri == "http://127.0.0.1:5000"


def test_source_format_is_inferred() -> None:
    source = {"name": "s", "columns": {"body": "b"}}
    params = {"data": {"sources": []}, "heads": {"category": {"labels": ["a", "b"]}}}
    for path, expected in [
        ("x.csv", "csv"),
        ("x.csv.gz", "csv"),
        ("x.parquet", "parquet"),
        ("x.jsonl", "jsonl"),
    ]:
        params["data"]["sources"] = [{**source, "path": path}]
        assert Params.model_validate(params).data.sources[0].file_format == expected


def test_yaml_special_keys_and_meta_clashes_are_errors(tmp_path: Path, sources: dict[str, Path]) -> None:
    data = params_dict(sources, tmp_path / "mlruns")
    data["data"]["sources"][0]["labels"]["urgency"]["mapping"] = {True: "high", "P2": "medium"}
    with pytest.raises(ParamsError, match="mapping key True must be written as text"):
        load_params(write_params(tmp_path, data))
    data = params_dict(sources, tmp_path / "mlruns")
    data["data"]["sources"][0]["columns"]["meta"] = {"body": "prio"}
    with pytest.raises(ParamsError, match=r"meta names \['body'\] are fields of the ticket record"):
        load_params(write_params(tmp_path, data))


def test_a_head_without_labelled_sources_needs_no_settings(tmp_path: Path, sources: dict[str, Path]) -> None:
    """A helpdesk with urgency labels only configures no heads at all; mapping category labels
    without `heads.category` says what to add."""
    data = params_dict(sources, tmp_path / "mlruns")
    data["data"]["sources"] = data["data"]["sources"][:1]  # urgency labels only
    del data["heads"]
    params = load_params(write_params(tmp_path, data))
    assert params.heads.category is None and params.heads.category_labels is None
    assert params.heads.urgency.labels == ["high", "medium", "low"]
    data = params_dict(sources, tmp_path / "mlruns")
    del data["heads"]["category"]
    with pytest.raises(ParamsError, match=r"maps category labels, but heads.category is not configured"):
        load_params(write_params(tmp_path, data))

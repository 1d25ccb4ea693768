"""Text signals (params `signals`, rules `text_signals`): one registered signals model read from
the text, its per-signal confidences as predict columns, the rules reading them and saying so.
On the tiny random BERT; the real MiniLM only in the slow end-to-end test of the two tickets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import PROJECT, params_dict, write_params, write_sources
from tests.rules_helpers import make_rules, outputs, rule, run
from tests.test_transformer import make_tiny_checkpoint
from urgency.config import HEADS, SIGNALS_MODEL, load_params
from urgency.errors import ModelNotFoundError, ParamsError
from urgency.models import HeadRef, ModelSource, load_models, resolve
from urgency.predict import output_columns, predict_frame, signal_confidences
from urgency.rules import load_rules
from urgency.scoring import score_frame
from urgency.train import SIGNALS_DEFINITION_TAG, train

SIGNALS = {
    "other": ["How do I change my password?", "Please send me the invoice."],
    "descriptions": {
        "service_down": ["The whole system is down.", "Nobody can reach the website."],
        "security": ["Someone logged into our admin account.", "We were hacked."],
    },
}


def _registry(params: Any) -> dict[str, Any]:
    return {
        "tracking_uri": params.mlflow.tracking_uri,
        "model_names": {name: params.mlflow.model_name(name) for name in (*HEADS, SIGNALS_MODEL)},
        "alias": params.mlflow.champion_alias,
    }


@pytest.fixture(scope="module")
def signals_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny sources trained with a `signals` block: heads and the signals model registered."""
    folder = tmp_path_factory.mktemp("signals")
    checkpoint = make_tiny_checkpoint(folder / "tiny-bert")
    data = params_dict(write_sources(folder / "data"), folder / "mlruns")
    data["signals"] = SIGNALS
    data["training"] = {"label_free": {"checkpoint": str(checkpoint)}}
    params_path = write_params(folder, data)
    params = load_params(params_path)
    result = train(params, None, params_path=params_path, code_folder=PROJECT)
    return {"params": params, "params_path": params_path, "result": result, "folder": folder, "data": data}


# ---------------------------------------------------------------------------------------------
# Params


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["descriptions"].update(other=["x"]), "not 'other'"),
        (lambda s: s["descriptions"].update({"Service-Down": ["x"]}), "lower-case"),
        (lambda s: s["descriptions"].update(service_down=[]), "no descriptions"),
        (lambda s: s.update(threshold=0.5), "unknown key"),
        (lambda s: s.update(other=[]), "other"),
    ],
)
def test_a_wrong_signals_block_is_a_params_error_naming_it(tmp_path: Path, change: Any, message: str) -> None:
    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["signals"] = json.loads(json.dumps(SIGNALS))
    change(data["signals"])
    with pytest.raises(ParamsError, match=message):
        load_params(write_params(tmp_path, data))


def test_the_demo_params_describe_the_six_signals_and_the_rules_read_them() -> None:
    params = load_params(PROJECT / "params.yaml")
    assert params.signals is not None
    six = ["service_down", "many_users", "security", "data_loss", "payment_failure", "legal_deadline"]
    assert list(params.signals.descriptions) == six
    rules = load_rules(PROJECT / "rules.yaml", category_labels=params.heads.category_labels)
    assert list(rules.spec.text_signals) == six
    assert not rules.warnings
    assert {f"text_{name}" for name in six} <= set(rules.readers)


# ---------------------------------------------------------------------------------------------
# The model: P(signal vs other) from one softmax


def test_each_signal_is_its_own_binary_softmax_of_the_two_cosines() -> None:
    """The saved model's softmax over [signals..., other] holds every binary one exactly."""
    cosines = np.array([[0.61, 0.40, 0.55], [0.20, 0.33, 0.30]])  # service_down, security, other
    temperature = 0.05
    logits = cosines / temperature
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    got = signal_confidences(proba, ["service_down", "security", "other"])
    expected = 1 / (1 + np.exp(-(cosines[:, :2] - cosines[:, [2]]) / temperature))
    assert np.allclose(got, expected)
    # Multi-label: both signals can be sure at once.
    assert np.allclose(signal_confidences(np.array([[0.5, 0.5, 0.0]]), ["a", "b", "other"]), [[1.0, 1.0]])


def test_train_registers_the_signals_model_once_per_definition(signals_store: dict[str, Any]) -> None:
    params, result = signals_store["params"], signals_store["result"]
    assert result.signals_version == "1"
    assert SIGNALS_MODEL not in result.heads  # not a head: no splits, no evaluation
    client = MlflowClient(tracking_uri=params.mlflow.tracking_uri, registry_uri=params.mlflow.tracking_uri)
    name = params.mlflow.model_name(SIGNALS_MODEL)
    version = client.get_model_version_by_alias(name, params.mlflow.champion_alias)
    assert str(version.version) == "1" and version.tags["family"] == "label-free"
    assert version.tags[SIGNALS_DEFINITION_TAG] and version.tags["artifact_sha256"]
    # The same definition again (a retrain): nothing new registered.
    again = train(params, ["urgency"], params_path=signals_store["params_path"], code_folder=PROJECT)
    assert again.signals_version is None
    assert train(params, None, code_folder=PROJECT).signals_version is None
    assert len(client.search_model_versions(f"name='{name}'")) == 1


def test_only_the_callers_that_score_resolve_the_signals_model(signals_store: dict[str, Any]) -> None:
    params = signals_store["params"]
    plain = resolve(None, model_dir=None, **_registry(params))
    assert [ref.head for ref in plain.heads] == list(HEADS)
    scoring = resolve(["urgency"], model_dir=None, **_registry(params), signals=True)
    assert [ref.head for ref in scoring.heads] == ["urgency", SIGNALS_MODEL]
    assert scoring.versions()[SIGNALS_MODEL] == "1"


def test_predict_adds_one_confidence_column_per_signal(signals_store: dict[str, Any]) -> None:
    params = signals_store["params"]
    models = load_models(resolve(None, model_dir=None, **_registry(params), signals=True))
    assert list(models[SIGNALS_MODEL].labels) == ["service_down", "security", "other"]
    tickets = pd.DataFrame({"subject": ["Down", ""], "body": ["The whole system is down.", ""]})
    frame = predict_frame(models, tickets, max_text_chars=500)
    assert list(frame.columns) == ["subject", "body", *output_columns(models)]
    assert output_columns(models)[-3:] == ["text_service_down", "text_security", "error"]
    first = frame.loc[0, ["text_service_down", "text_security"]].astype(float)
    assert ((first >= 0) & (first <= 1)).all()
    assert frame.loc[1, ["text_service_down", "text_security"]].isna().all()  # empty text


def test_export_carries_the_signals_model_and_a_tampered_one_is_refused(
    signals_store: dict[str, Any], tmp_path: Path
) -> None:
    from urgency.tracking import export_champions

    params = signals_store["params"]
    exported = tmp_path / "models"
    versions = export_champions(params.mlflow, None, exported)
    assert versions[SIGNALS_MODEL] == "1"
    source = resolve(None, model_dir=exported, **_registry(params), signals=True)
    assert SIGNALS_MODEL in source.describe()
    assert SIGNALS_MODEL not in resolve(None, model_dir=exported, **_registry(params)).describe()
    head_file = next((exported / SIGNALS_MODEL).rglob("head.json"))
    head_file.write_text(head_file.read_text().replace("0.", "1.", 1))
    with pytest.raises(ModelNotFoundError, match="does not match"):
        load_models(source)


def test_score_frame_decides_on_the_signals_and_explains_them(signals_store: dict[str, Any]) -> None:
    """Thresholds 0: every signal fires, so the rules' explanation and the record show them."""
    params = signals_store["params"]
    models = load_models(resolve(["urgency"], model_dir=None, **_registry(params), signals=True))
    rules = make_rules(
        text_signals={"service_down": 0.0, "security": 0.0},
        impact_rules=[rule("outage", {"text_service_down": True}, impact="high", description="down")],
    )
    tickets = pd.DataFrame({"subject": ["Down"], "body": ["The whole system is down."]})
    scored = score_frame(models, tickets, rules, now=datetime(2026, 3, 2, 9, tzinfo=UTC), max_text_chars=500)
    decision = scored.decisions[0]
    confidence = float(scored.predicted.loc[0, "text_service_down"])
    assert decision.impact == "high"
    assert f"outage: impact low -> high [down; text: service down ({confidence:.2f})]" in (
        decision.explanation_text
    )
    assert [name for name, _ in decision.text_signals] == ["service_down", "security"]
    assert scored.frame().loc[0, "text_signals"].startswith(f"service_down={confidence:.2f};security=")


def test_the_service_serves_the_signals_and_stores_what_fired(
    signals_store: dict[str, Any], tmp_path: Path
) -> None:
    import yaml
    from fastapi.testclient import TestClient

    from serve.app import create_app
    from tests.rules_helpers import rules_dict
    from tests.serve_helpers import ALL, TICKET, rows, settings
    from urgency.store import predictions

    rules = tmp_path / "rules.yaml"  # thresholds 0: every signal fires, whatever the tiny model says
    rules.write_text(yaml.safe_dump(rules_dict(text_signals={"service_down": 0.0, "security": 0.0})))
    data = {**signals_store["data"], "scoring": {"rules": str(rules)}}
    database = f"sqlite:///{tmp_path / 'service.db'}"
    with TestClient(create_app(settings(write_params(tmp_path, data), database))) as client:
        info = client.get("/v1/model", headers=ALL).json()
        assert SIGNALS_MODEL in {head["head"] for head in info["heads"]}
        result = client.post("/v1/score", json=TICKET, headers=ALL).json()
        # The signals model is no decision an agent reports: feedback and the schema leave it out.
        event = {"ticket_id": TICKET["ticket_id"], "event_id": "e-1", "priority": "P1"}
        assert client.post("/v1/feedback", json=event, headers=ALL).status_code == 200
        schema = client.get("/openapi.json")
        assert (
            schema.status_code == 200
            and SIGNALS_MODEL not in schema.json()["components"]["schemas"]["Feedback"]["properties"]
        )
    assert result["model_versions"][SIGNALS_MODEL] == "1"
    assert SIGNALS_MODEL not in result["probabilities"]
    fired = result["text_signals"]
    assert set(fired) == {"service_down", "security"}
    stored = rows(database, predictions)[0]["text_signals"]
    assert set(stored.split(";")) == {f"{name}={value:.2f}" for name, value in fired.items()}


def test_demo_agents_decide_as_score_does_with_the_signals(
    signals_store: dict[str, Any], tmp_path: Path
) -> None:
    import yaml

    from tests.cli import invoke
    from tests.rules_helpers import rules_dict

    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rules_dict(text_signals={"service_down": 0.0})))
    params = write_params(tmp_path, {**signals_store["data"], "scoring": {"rules": str(rules)}})
    closed = tmp_path / "closed.csv"
    arguments = ["-p", str(params), "--output", str(closed), "--rows", "20", "--now", "2026-03-02"]
    done = invoke("demo-agents", *arguments)
    assert done.exit_code == 0, done.output
    assert "agents' values: urgency" in done.output and "signals" not in done.output
    assert len(pd.read_csv(closed)) == 20


# ---------------------------------------------------------------------------------------------
# The rules


def _signal_rules() -> Any:
    return make_rules(
        text_signals={"service_down": 0.9, "security": 0.95},
        impact_rules=[rule("text-down", {"text_service_down": True}, impact="high")],
        priority_rules=[rule("text-security", {"text_security": True}, at_least="P2")],
    )


def test_a_signal_counts_at_or_above_its_threshold() -> None:
    rules = _signal_rules()
    below = run(rules, outputs(urgency="low"), text_service_down=0.89, text_security=0.2)
    assert below.impact == "low" and below.priority == "P4" and below.text_signals == ()
    at = run(rules, outputs(urgency="low"), text_service_down=0.9, text_security=0.97)
    assert at.impact == "high" and at.priority == "P2"
    assert at.text_signals == (("service_down", 0.9), ("security", 0.97))
    assert "text-down: impact low -> high [text: service down (0.90)]" in at.explanation_text
    assert "text-security: priority P3 -> P2 [at least P2: text: security (0.97)]" in at.explanation_text
    assert at.to_record()["text_signals"] == "service_down=0.90;security=0.97"


def test_without_a_signals_model_the_rules_see_no_value_and_say_so() -> None:
    decision = run(_signal_rules(), outputs(urgency="low"))  # no text_* columns at all
    assert decision.priority == "P4" and decision.text_signals == ()
    assert "no text signal service_down, security (no signals model" in decision.explanation_text
    assert "text-down" in decision.explanation_text and "text-security" in decision.explanation_text
    # A column present but empty (no usable text): no value, and no such step.
    empty = run(_signal_rules(), outputs(urgency="low"), text_service_down=None, text_security=None)
    assert "no signals model" not in empty.explanation_text


def test_an_input_column_never_passes_for_a_text_signal() -> None:
    rules = _signal_rules()
    tickets = pd.DataFrame({"subject": ["Down"], "body": ["All is down"], "text_security": [0.99]})
    scored = score_frame({}, tickets, rules, now=datetime(2026, 3, 2, 9, tzinfo=UTC), max_text_chars=500)
    assert scored.decisions[0].text_signals == () and scored.decisions[0].priority == "P4"
    assert scored.frame().loc[0, "text_security"] == 0.99  # the input column, kept unchanged


def test_a_rule_may_read_only_the_signals_the_file_lists() -> None:
    with pytest.raises(ParamsError, match="unknown field 'text_data_loss'"):
        make_rules(
            text_signals={"service_down": 0.9},
            impact_rules=[rule("lost", {"text_data_loss": True}, impact="high")],
        )
    with pytest.raises(ParamsError, match="text_signals"):
        make_rules(text_signals={"service_down": 1.5})


# ---------------------------------------------------------------------------------------------
# The README's tickets with the real MiniLM

OUTAGE = {
    "ticket_id": "T-1001",
    "subject": "Production outage - payments failing",
    "body": "Since 07:50 every payment in our shop fails with error 502. Customers cannot check out.",
    "created_at": "2026-11-23T08:05:00Z",
}
SECURITY = {
    "ticket_id": "T-1002",
    "subject": "Suspicious admin logins",
    "body": "We noticed several logins to our administrator account from unknown countries last "
    "night. None of us made them.",
    "created_at": "2026-11-23T08:05:00Z",
    "plan": "free",
}


@pytest.mark.slow
def test_the_readme_outage_and_a_free_plan_security_ticket_with_the_real_minilm(tmp_path: Path) -> None:
    """Without structured fields and without head models (urgency falls back to medium): the
    outage is P1 from the text, the suspicious logins on the free plan are raised from P4."""
    from urgency.config import LabelFreeParams
    from urgency.label_free import fit_signals
    from urgency.transformer import save_head_model

    params = load_params(PROJECT / "params.yaml")
    assert params.signals is not None
    folder = tmp_path / SIGNALS_MODEL
    fitted = fit_signals(params.signals, LabelFreeParams())
    save_head_model(fitted, folder, pd.DataFrame({"text": params.signals.other[:3]}))
    signals = load_models(ModelSource((HeadRef(SIGNALS_MODEL, str(folder)),)))  # digests checked
    rules = load_rules(PROJECT / "rules.yaml", category_labels=params.heads.category_labels)
    tickets = pd.DataFrame([OUTAGE, SECURITY])
    now = datetime(2026, 11, 23, 8, 10, tzinfo=UTC)

    before = score_frame({}, tickets, rules, now=now, max_text_chars=5000, surge=False).decisions
    assert [d.priority for d in before] == ["P4", "P4"]  # medium urgency x low impact
    scored = score_frame(signals, tickets, rules, now=now, max_text_chars=5000, surge=False)
    outage, security = scored.decisions

    assert outage.priority == "P1" and outage.impact == "high"
    fired = dict(outage.text_signals)
    assert {"service_down", "payment_failure"} <= set(fired)
    assert f"text: service down ({fired['service_down']:.2f})" in outage.explanation_text
    assert "text-outage" in outage.rules_fired

    assert security.priority == "P2" and "security" in dict(security.text_signals)
    assert "P2: first response 16h" in security.explanation_text  # the free plan's P2, not 40h
    assert security.first_response_due < before[1].first_response_due
    assert "text-security" in security.rules_fired
    assert "text: security (" in security.explanation_text


def test_another_encoder_runtime_is_another_signals_definition(tmp_path: Path) -> None:
    """bf16's confidences are not fp32's near the thresholds: a runtime change registers anew."""
    import mlflow

    from urgency.tracking import use_tracking
    from urgency.train import register_signals

    data = params_dict(write_sources(tmp_path / "data"), tmp_path / "mlruns")
    data["signals"] = SIGNALS
    checkpoint = make_tiny_checkpoint(tmp_path / "tiny-bert")
    versions = []
    for runtime in ("fp32", "fp32", "bf16"):
        data["training"] = {"label_free": {"checkpoint": str(checkpoint), "runtime": runtime}}
        params = load_params(write_params(tmp_path, data))
        mlflow.set_experiment(
            experiment_id=use_tracking(params.mlflow.tracking_uri, "signals", str(tmp_path / "artifacts"))
        )
        uri = params.mlflow.tracking_uri
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        versions.append(register_signals(params, client))
    assert versions == ["1", None, "2"]

"""The decided-ticket record is defined once (`urgency.decision`): every other shape of it - the
scored file's columns, the service's answer, the store's columns, the closed-tickets CSV - must
agree with it, field by field."""

from __future__ import annotations

import dataclasses

from serve.schemas import ScoreResult
from tests.rules_helpers import NOW, make_rules, outputs, run
from urgency.agreement import CLOSED_TICKET_COLUMNS, FIELDS
from urgency.decision import (
    DECISION_COLUMNS,
    NO_DEADLINE,
    PREDICTION_FIELDS,
    RECORD_FIELDS,
    Decision,
    is_no_deadline,
)
from urgency.predict import output_columns
from urgency.store import STORED_DECISION_FIELDS, predictions

# The service answers with lists where a file has text, and adds what only a request has.
SERVICE_ONLY = {
    "ticket_id",
    "probabilities",
    "explanation_text",
    "error",
    "model_versions",
    # What the customer is told: from the store's queue (urgency.backlog), not the record.
    "expected_first_response_at",
    "expected_first_response",
    "at_risk",
    # Repeat issues: the knowledge base's articles and the cluster (serve.repeat), not the record.
    "articles",
    "auto_reply_articles",
    "cluster",
    "similar_tickets",
    "duplicate_of",
}
FILE_ONLY = {"order_key", "explanation_json"}


def test_the_record_has_one_description_per_field_of_the_decision() -> None:
    names = [field.name for field in dataclasses.fields(Decision)]
    assert list(RECORD_FIELDS) == [*names[: names.index("explanation") + 1], "explanation_json", "notes"]
    assert all((text and text.endswith(")")) or text.endswith(".") for text in RECORD_FIELDS.values())


def test_a_decision_flattens_to_exactly_the_record_fields() -> None:
    decision = run(make_rules(), outputs(urgency="high"), NOW)
    assert list(decision.to_record()) == list(RECORD_FIELDS)


def test_file_columns_are_the_model_columns_then_the_decision_columns() -> None:
    assert set(DECISION_COLUMNS) == set(RECORD_FIELDS) - set(PREDICTION_FIELDS) - {"created_at"}
    model_columns = set(output_columns({}))  # only "error" without models
    assert not set(DECISION_COLUMNS) & model_columns


def test_the_service_answer_is_the_record() -> None:
    assert set(ScoreResult.model_fields) == (set(RECORD_FIELDS) - FILE_ONLY) | SERVICE_ONLY
    for name, info in ScoreResult.model_fields.items():
        if name in RECORD_FIELDS and name != "explanation":
            assert info.description == RECORD_FIELDS[name], name


def test_the_store_keeps_record_fields_as_columns() -> None:
    assert set(STORED_DECISION_FIELDS) <= set(RECORD_FIELDS)
    assert set(STORED_DECISION_FIELDS) <= set(predictions.c.keys())


def test_the_closed_tickets_csv_uses_the_record_names() -> None:
    own = {"ticket_id", "subject", "body", "first_response_at", "resolved_at"}
    agents = {f"agent_{name}" for name in FIELDS}
    assert set(CLOSED_TICKET_COLUMNS) - own - agents <= set(RECORD_FIELDS)
    assert {name.removeprefix("agent_") for name in agents} <= set(RECORD_FIELDS)


def test_no_deadline_has_one_spelling() -> None:
    assert is_no_deadline(NO_DEADLINE) and not is_no_deadline("2026-11-23T08:05:00Z")
    assert not is_no_deadline(None)

"""The OpenAPI schema states what this deployment accepts (`serve.openapi`)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from serve.app import create_app
from tests.serve_helpers import settings


def test_the_schema_states_the_limit_and_the_served_values(service_params: Path, database: str) -> None:
    app = create_app(settings(service_params, database, max_batch=3))
    # Before the lifespan: the limit is a setting, the values wait for the models.
    schema = app.openapi()
    assert schema["components"]["schemas"]["TicketBatch"]["properties"]["tickets"]["maxItems"] == 3
    assert "(3 here)" in schema["paths"]["/v1/score/batch"]["post"]["description"]
    assert "not" not in schema["components"]["schemas"]["Ticket"]["properties"]["fields"]["propertyNames"]
    with TestClient(app) as client:
        served = client.get("/openapi.json").json()
    components = served["components"]["schemas"]
    assert components["TicketBatch"]["properties"]["tickets"]["maxItems"] == 3
    assert components["Feedback"]["properties"]["urgency"]["anyOf"][0]["enum"] == ["high", "low", "medium"]
    assert "P1" in components["Feedback"]["properties"]["priority"]["anyOf"][0]["enum"]
    reserved = components["Ticket"]["properties"]["fields"]["propertyNames"]["not"]["enum"]
    assert {"ticket_id", "subject", "body", "urgency"} <= set(reserved)
    # FastAPI caches its generated schema: patching works on a copy, so the cache keeps the
    # schemas' own cap.
    generated = app.openapi_schema["components"]["schemas"]
    assert generated["TicketBatch"]["properties"]["tickets"]["maxItems"] != 3


def test_the_schema_states_the_years_of_a_date(client: TestClient) -> None:
    components = client.get("/openapi.json").json()["components"]["schemas"]
    moments = [
        components[model]["properties"][name]
        for model, names in {
            "Ticket": ["created_at"],
            "Feedback": ["decided_at", "first_response_at", "resolved_at"],
        }.items()
        for name in names
    ]
    for moment in moments:
        assert "1970" in moment["description"] and "2999" in moment["description"], moment
        assert moment["x-years"] == {"minimum": 1970, "maximum": 2999}

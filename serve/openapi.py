"""The OpenAPI schema states what this deployment accepts, beyond what the code alone says:
its batch limit (a setting), and the labels, levels and teams of the models and rules it serves
(they change with a reload, so the schema is patched on every call, from the state)."""

from __future__ import annotations

import copy
from typing import Any

from serve.routes.scoring import BATCH_DESCRIPTION
from serve.state import ServiceState


def deployment_schema(generated: dict[str, Any], state: ServiceState) -> dict[str, Any]:
    """`generated` (FastAPI's schema, which FastAPI caches: left as it is) with this deployment's
    limits and values."""
    schema = copy.deepcopy(generated)
    max_batch = state.settings.max_batch
    batch = schema["paths"]["/v1/score/batch"]["post"]
    batch["description"] = BATCH_DESCRIPTION.format(max_batch=max_batch)
    components = schema["components"]["schemas"]
    components["TicketBatch"]["properties"]["tickets"]["maxItems"] = max_batch
    runtime = state.runtime
    if runtime is not None:
        for name, values in runtime.allowed_values().items():
            components["Feedback"]["properties"][name]["anyOf"][0]["enum"] = sorted(values)
        # A decided ticket to assign names one of the rules' levels and teams.
        decided = components["DecidedTicket"]["properties"]
        decided["priority"]["enum"] = list(runtime.rules.levels)
        decided["team"]["enum"] = sorted(team.name for team in runtime.rules.spec.teams)
        names = components["Ticket"]["properties"]["fields"]["propertyNames"]
        names["not"] = {"enum": sorted(runtime.reserved_fields())}
    return schema

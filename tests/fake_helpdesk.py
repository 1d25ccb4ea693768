"""A fake of the four helpdesks' REST endpoints that write-back uses: a real HTTP server (run it
with `python -m tests.fake_helpdesk --port N --credentials JSON`) answering in each vendor's
documented shapes, recording every call. `POST /_down {"down": true}` makes it answer 503 with
`Retry-After: 1` (a helpdesk that is down); `GET /_calls` lists what it received.

- Zendesk `PUT /api/v2/tickets/{id}.json` -> 200 `{"ticket": {...}}` (Support API, Tickets)
- Freshdesk `PUT /api/v2/tickets/{id}` -> 200 ticket; `POST /api/v2/tickets/{id}/notes` -> 201
- Zammad `PUT /api/v1/tickets/{id}` -> 200 ticket; `POST /api/v1/tags/add` -> 200 `true`
- Jira `PUT /rest/api/3/issue/{key}` -> 204; `POST /rest/servicedeskapi/request/{key}/comment` -> 201

A cluster alert's parent incident (`urgency.writeback.send_parent_incident`):
- Zendesk `POST /api/v2/tickets.json` -> 201 `{"ticket": {"id", ...}}`;
  `PUT /api/v2/tickets/update_many.json?ids=1,2` -> 200 `{"job_status": {...}}`
- Freshdesk `POST /api/v2/tickets` (a tracker: `related_ticket_ids`) -> 201 ticket
- Zammad `POST /api/v1/tickets` -> 201 ticket (`id`, `number`); `GET /api/v1/tickets/{id}`;
  `POST /api/v1/links/add` -> 201
- Jira `POST /rest/api/3/issue` -> 201 `{"id", "key", "self"}`; `POST /rest/api/3/issueLink` -> 201
Each refuses (400 / 422, as the vendor does) a body missing what the vendor requires.
"""

from __future__ import annotations

import argparse
import base64
import json
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

state: dict[str, Any] = {"down": False, "calls": [], "credentials": {}, "created": {}, "next_id": 9000}
app = FastAPI()


def expected_authorization(helpdesk: str) -> str:
    credential = state["credentials"][helpdesk]
    if helpdesk == "zammad":
        return f"Token token={credential}"
    user = f"{credential}:X" if helpdesk == "freshdesk" else credential
    return "Basic " + base64.b64encode(user.encode()).decode()


async def record(helpdesk: str, request: Request) -> Response | None:
    """The call recorded; a response when the fake refuses it (down, or a wrong credential)."""
    if state["down"]:
        return JSONResponse({"error": "maintenance"}, status_code=503, headers={"Retry-After": "1"})
    if request.headers.get("authorization") != expected_authorization(helpdesk):
        return JSONResponse({"error": "Couldn't authenticate you"}, status_code=401)
    body = await request.body()
    state["calls"].append(
        {
            "helpdesk": helpdesk,
            "method": request.method,
            "path": request.url.path,
            "json": json.loads(body or b"null"),
        }
    )
    return None


def _created(helpdesk: str, ticket: dict[str, Any]) -> dict[str, Any]:
    """A new ticket with the next id, kept (Zammad's is read back by id)."""
    state["next_id"] += 1
    ticket = {**ticket, "id": state["next_id"]}
    state["created"][f"{helpdesk}:{ticket['id']}"] = ticket
    return ticket


def _missing(helpdesk: str, body: Any, *required: str) -> Response | None:
    """The vendor's refusal of a body without a required key (a dotted path)."""
    for path in required:
        value = body
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value in (None, "", []):
            status = 422 if helpdesk == "zammad" else 400
            return JSONResponse({"error": f"{path} is required"}, status_code=status)
    return None


@app.post("/api/v2/tickets.json")
async def zendesk_create(request: Request) -> Response:
    refused = await record("zendesk", request)
    if refused:
        return refused
    body = state["calls"][-1]["json"]
    wrong = _missing("zendesk", body, "ticket.subject", "ticket.comment.body")
    return wrong or JSONResponse({"ticket": _created("zendesk", body["ticket"])}, status_code=201)


@app.put("/api/v2/tickets/update_many.json")
async def zendesk_update_many(ids: str, request: Request) -> Response:
    refused = await record("zendesk", request)
    if refused:
        return refused
    if not all(part.isdecimal() for part in ids.split(",")) or len(ids.split(",")) > 100:
        return JSONResponse({"error": "ids: up to 100 ticket ids"}, status_code=400)
    wrong = _missing("zendesk", state["calls"][-1]["json"], "ticket")
    return wrong or JSONResponse(
        {"job_status": {"id": "job-1", "status": "queued", "total": len(ids.split(","))}}
    )


@app.post("/api/v2/tickets")
async def freshdesk_create(request: Request) -> Response:
    refused = await record("freshdesk", request)
    if refused:
        return refused
    body = state["calls"][-1]["json"]
    if not body.get("email") and not body.get("requester_id"):
        return JSONResponse({"description": "Validation failed", "errors": [{"field": "requester_id"}]}, 400)
    wrong = _missing("freshdesk", body, "subject", "description", "status", "priority")
    return wrong or JSONResponse(_created("freshdesk", body), status_code=201)


@app.post("/api/v1/tickets")
async def zammad_create(request: Request) -> Response:
    refused = await record("zammad", request)
    if refused:
        return refused
    body = state["calls"][-1]["json"]
    wrong = _missing("zammad", body, "title", "group", "article.body")
    if wrong or not (body.get("customer") or body.get("customer_id")):
        return wrong or JSONResponse({"error": "Need customer_id or customer"}, status_code=422)
    ticket = _created("zammad", body)
    ticket["number"] = str(31000 + ticket["id"])
    return JSONResponse(ticket, status_code=201)


@app.get("/api/v1/tickets/{ticket}")
async def zammad_ticket(ticket: str, request: Request) -> Response:
    refused = await record("zammad", request)
    if refused:
        return refused
    found = state["created"].get(f"zammad:{ticket}")
    return JSONResponse(found) if found else JSONResponse({"error": "Not found"}, status_code=404)


@app.post("/api/v1/links/add")
async def zammad_link(request: Request) -> Response:
    refused = await record("zammad", request)
    if refused:
        return refused
    required = ("link_type", "link_object_source", "link_object_source_number", "link_object_target")
    wrong = _missing("zammad", state["calls"][-1]["json"], *required, "link_object_target_value")
    return wrong or JSONResponse({}, status_code=201)


@app.post("/rest/api/3/issue")
async def jira_create(request: Request) -> Response:
    refused = await record("jira", request)
    if refused:
        return refused
    body = state["calls"][-1]["json"]
    wrong = _missing("jira", body, "fields.project.key", "fields.summary", "fields.issuetype.name")
    if wrong:
        return wrong
    issue = _created("jira", body)
    key = f"{body['fields']['project']['key']}-{issue['id']}"
    return JSONResponse(
        {"id": str(issue["id"]), "key": key, "self": f"/rest/api/3/issue/{key}"}, status_code=201
    )


@app.post("/rest/api/3/issueLink")
async def jira_link(request: Request) -> Response:
    refused = await record("jira", request)
    if refused:
        return refused
    wrong = _missing("jira", state["calls"][-1]["json"], "type.name", "inwardIssue.key", "outwardIssue.key")
    return wrong or Response(status_code=201)


@app.put("/api/v2/tickets/{ticket}")
async def zendesk_or_freshdesk_update(ticket: str, request: Request) -> Response:
    helpdesk = "zendesk" if ticket.endswith(".json") else "freshdesk"
    refused = await record(helpdesk, request)
    if refused:
        return refused
    sent = state["calls"][-1]["json"]
    if helpdesk == "zendesk":
        return JSONResponse({"ticket": {"id": int(ticket.removesuffix(".json")), **sent["ticket"]}})
    return JSONResponse({"id": int(ticket), **sent})


@app.post("/api/v2/tickets/{ticket}/notes")
async def freshdesk_note(ticket: str, request: Request) -> Response:
    refused = await record("freshdesk", request)
    return refused or JSONResponse({"id": 1, "ticket_id": int(ticket), "private": True}, status_code=201)


@app.put("/api/v1/tickets/{ticket}")
async def zammad_update(ticket: str, request: Request) -> Response:
    refused = await record("zammad", request)
    return refused or JSONResponse({"id": int(ticket), **state["calls"][-1]["json"]})


@app.post("/api/v1/tags/add")
async def zammad_tag(request: Request) -> Response:
    refused = await record("zammad", request)
    return refused or JSONResponse(True)


@app.put("/rest/api/3/issue/{key}")
async def jira_update(key: str, request: Request) -> Response:
    refused = await record("jira", request)
    return refused or Response(status_code=204)


@app.post("/rest/servicedeskapi/request/{key}/comment")
async def jira_comment(key: str, request: Request) -> Response:
    refused = await record("jira", request)
    return refused or JSONResponse(
        {"id": "1000", "body": state["calls"][-1]["json"]["body"], "public": False}, status_code=201
    )


@app.post("/_hook")
async def hook(request: Request) -> Response:
    """A plain webhook receiver (the service's alert webhook): its headers and raw body kept."""
    if state["down"]:
        return JSONResponse({"error": "maintenance"}, status_code=503, headers={"Retry-After": "1"})
    headers = {name: value for name, value in request.headers.items() if name.startswith("x-urgency-")}
    body = (await request.body()).decode()
    state["calls"].append(
        {"helpdesk": None, "method": "POST", "path": "/_hook", "json": None, "headers": headers, "body": body}
    )
    return Response(status_code=204)


@app.post("/_down")
async def set_down(request: Request) -> dict[str, bool]:
    state["down"] = bool((await request.json())["down"])
    return {"down": state["down"]}


@app.get("/_calls")
async def calls() -> list[dict[str, Any]]:
    return state["calls"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--credentials", required=True, help="JSON: helpdesk -> credential")
    args = parser.parse_args()
    state["credentials"] = json.loads(args.credentials)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")

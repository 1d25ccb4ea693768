"""A fake of the four helpdesks' REST endpoints that write-back uses: a real HTTP server (run it
with `python -m tests.fake_helpdesk --port N --credentials JSON`) answering in each vendor's
documented shapes, recording every call. `POST /_down {"down": true}` makes it answer 503 with
`Retry-After: 1` (a helpdesk that is down); `GET /_calls` lists what it received.

- Zendesk `PUT /api/v2/tickets/{id}.json` -> 200 `{"ticket": {...}}` (Support API, Tickets)
- Freshdesk `PUT /api/v2/tickets/{id}` -> 200 ticket; `POST /api/v2/tickets/{id}/notes` -> 201
- Zammad `PUT /api/v1/tickets/{id}` -> 200 ticket; `POST /api/v1/tags/add` -> 200 `true`
- Jira `PUT /rest/api/3/issue/{key}` -> 204; `POST /rest/servicedeskapi/request/{key}/comment` -> 201
"""

from __future__ import annotations

import argparse
import base64
import json
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

state: dict[str, Any] = {"down": False, "calls": [], "credentials": {}}
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

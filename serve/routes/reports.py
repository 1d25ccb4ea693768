"""GET /v1/reports/agreement and /v1/reports/operations: the pages over the service's own store."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse

from serve.deps import AdminKey, RuntimeDep, ServiceDep, StoreDep
from serve.errors import ERRORS, as_json, invalid

router = APIRouter(tags=["reports"])


@router.get(
    "/v1/reports/agreement",
    response_class=HTMLResponse,
    response_model=None,
    # The page is HTML, its errors JSON: stated per response, since FastAPI would give a
    # `model` the route's media type.
    responses={
        **{code: as_json(spec["description"], "Problem") for code, spec in ERRORS.items()},
        404: as_json("No decided ticket in the period", "Problem"),
        422: as_json("since or until is not an ISO 8601 date", "HTTPValidationError"),
    },
)
def agreement_report(
    runtime_now: RuntimeDep,
    store: StoreDep,
    _key: AdminKey,
    since: str | None = None,
    until: str | None = None,
) -> HTMLResponse | JSONResponse:
    """The agreement report over the tickets scored in the period that agents decided on
    (`until`: a date is included): the page `urgency report agreement` writes."""
    # Imported here: only this admin page needs the report code (and its plotting).
    from urgency.agreement import EmptyReport
    from urgency.report import PeriodError, figures_from_store, parse_period, render_html, report_settings

    try:
        start, end = parse_period(since, until)
    except PeriodError as error:
        raise invalid(["query", error.name], error.reason) from None  # a 422 never echoes the input
    settings_now = report_settings(runtime_now.params, runtime_now.rules)
    try:
        figures = figures_from_store(
            store, settings_now, source="the service's store", since=start, until=end
        )
    except EmptyReport as error:
        return JSONResponse({"detail": str(error)}, status_code=404)
    return HTMLResponse(render_html(figures))


@router.get(
    "/v1/reports/operations",
    response_class=HTMLResponse,
    response_model=None,
    responses={
        **{code: as_json(spec["description"], "Problem") for code, spec in ERRORS.items()},
        404: as_json("No closed and no open ticket", "Problem"),
        422: as_json("since or until is not an ISO 8601 date", "HTTPValidationError"),
    },
)
def operations_report(
    runtime_now: RuntimeDep,
    store: StoreDep,
    service: ServiceDep,
    _key: AdminKey,
    since: str | None = None,
    until: str | None = None,
) -> HTMLResponse | JSONResponse:
    """The operations report over the service's store: the closed tickets created in the period
    (`until`: a date is included) and the open backlog now: the page `urgency report operations`
    writes. Promotions are marked where a new model version first scored a ticket."""
    from urgency.agreement import EmptyReport
    from urgency.backlog import read_backlog
    from urgency.operations_report import (
        figures_from_frames,
        frames_from_store,
        operations_settings,
        render_html,
    )
    from urgency.report import PeriodError, parse_period

    try:
        start, end = parse_period(since, until)
    except PeriodError as error:
        raise invalid(["query", error.name], error.reason) from None  # a 422 never echoes the input
    # The open backlog as GET /v1/backlog gives it: hours left, queues, the breach risks.
    backlog_now = read_backlog(
        store,
        levels=runtime_now.rules.levels,
        operations=runtime_now.params.operations,
        now=datetime.now(UTC),
        breach_model=service.breach_model(runtime_now),
        agents=service.agents(runtime_now)[0],
    )
    frames = frames_from_store(store, backlog_now)
    settings_now = operations_settings(runtime_now.rules)
    try:
        figures = figures_from_frames(
            frames, settings_now, source="the service's store", since=start, until=end
        )
    except EmptyReport as error:
        return JSONResponse({"detail": str(error)}, status_code=404)
    return HTMLResponse(render_html(figures))

"""The prediction service: helpdesks score tickets and report what their agents decided.

Run it with `urgency serve` (uvicorn). Models load once, in the lifespan; every scored ticket and
every feedback event is stored (`urgency.store`). Inference runs in plain `def` endpoints, so in
FastAPI's thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.deps import RuntimeDep, StoreDep, require
from serve.middleware import BodyLimit, FunctionMiddleware, Metrics
from serve.runtime import Runtime, load_runtime, prediction_row, registry_versions, score_tickets
from serve.schemas import (
    Feedback,
    FeedbackAck,
    Health,
    ModelInfo,
    Problem,
    ReloadResult,
    ScoreBatchResult,
    ScoreResult,
    Ticket,
    TicketBatch,
)
from serve.settings import ServiceSettings
from urgency.config import load_params
from urgency.errors import UrgencyError
from urgency.rules.engine import surge_active
from urgency.store import FeedbackConflict, Store, check_schema, make_engine

log = logging.getLogger("urgency.serve")

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body is not JSON"},
    401: {"model": Problem, "description": "Missing or invalid API key"},
    403: {"model": Problem, "description": "The API key lacks the scope"},
    413: {"model": Problem, "description": "Request body too large"},
    503: {"model": Problem, "description": "Models not loaded"},
}


# ---------------------------------------------------------------------------------------------
# Errors: a message and, for validation, where; never a stack trace or internals


async def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    detail = [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}  # no echo of the input
        for item in error.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


async def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error; the service log has the details"}, status_code=500)


def _invalid(loc: list[str | int], message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])


# ---------------------------------------------------------------------------------------------
# The app


def create_app(settings: ServiceSettings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The service. `runtime`: models already loaded (else the lifespan loads them)."""
    settings = settings or ServiceSettings()
    metrics = Metrics()
    reload_lock = threading.Lock()

    def load() -> Runtime:
        params = load_params(settings.params)
        return load_runtime(params, model_dir=settings.model_dir, alias=settings.model_alias)

    def swap(app: FastAPI, new: Runtime) -> None:
        app.state.runtime = new  # one reference assignment: atomic for every reader
        metrics.show_versions(new.versions)
        log.info("serving models %s", new.versions)

    def reload(app: FastAPI) -> ReloadResult:
        with reload_lock:
            before = app.state.runtime.versions
            swap(app, load())
            return ReloadResult(
                changed=before != app.state.runtime.versions, before=before, after=app.state.runtime.versions
            )

    async def watch_alias(app: FastAPI) -> None:
        """Reload when the registry alias points at other versions (the periodic check)."""
        while True:
            await asyncio.sleep(settings.model_check_seconds)
            runtime_now: Runtime = app.state.runtime
            try:
                wanted = await run_in_threadpool(registry_versions, runtime_now.params, settings.model_alias)
                if wanted and wanted != runtime_now.versions:
                    log.info("alias moved %s -> %s: reloading", runtime_now.versions, wanted)
                    await run_in_threadpool(reload, app)
            except Exception:
                log.exception("model check failed; serving on with %s", runtime_now.versions)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        problems = settings.problems()
        if problems:
            raise UrgencyError("refusing to start: " + "; ".join(problems))
        engine = make_engine(settings.store_url())
        check_schema(engine)
        app.state.store = Store(engine)
        app.state.api_keys = settings.effective_keys()
        swap(app, runtime or await run_in_threadpool(load))
        watcher = asyncio.create_task(watch_alias(app)) if settings.model_check_seconds > 0 else None
        try:
            yield
        finally:
            if watcher:
                watcher.cancel()
                with suppress(asyncio.CancelledError):
                    await watcher
            engine.dispose()

    app = FastAPI(
        title="urgency",
        version="1",
        summary="Ticket priority, deadlines and team: learned urgency, category and sentiment plus rules.",
        lifespan=lifespan,
    )
    app.state.runtime = None
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.surge_cache = (0.0, False)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    def surge(runtime_now: Runtime, store: Store, now: datetime, tickets: list[Ticket]) -> bool:
        """Surge (`urgency.rules.engine.surge_active`): these tickets plus those already stored,
        created in the window (the store's count cached 30 s)."""
        spec = runtime_now.rules.spec.surge
        if spec.mode != "auto":
            return spec.mode == "on"
        checked, count = app.state.surge_cache
        if time.monotonic() - checked > 30:
            count = store.count_created_between(now - timedelta(hours=spec.window_hours), now)
            app.state.surge_cache = (time.monotonic(), count)
        created = [ticket.created_at for ticket in tickets]
        return surge_active(runtime_now.rules, created, now, counted_before=count)

    def score_and_store(runtime_now: Runtime, store: Store, tickets: list[Ticket]) -> list[ScoreResult]:
        reserved = runtime_now.reserved_fields()
        for position, ticket in enumerate(tickets):
            for name in ticket.fields:
                if name in reserved:
                    loc: list[str | int] = ["body", "tickets", position] if len(tickets) > 1 else ["body"]
                    raise _invalid([*loc, "fields", name], f"{name!r} is reserved (a ticket or model column)")
        now = datetime.now(UTC)
        scored = score_tickets(runtime_now, tickets, now=now, surge=surge(runtime_now, store, now, tickets))
        store.record_predictions([prediction_row(one, now) for one in scored])
        results = [one.result for one in scored]
        metrics.observe_results(results)
        return results

    @app.post("/v1/score", response_model=ScoreResult, tags=["scoring"], responses=ERRORS)
    def score(
        ticket: Ticket,
        runtime_now: Runtime = RuntimeDep,
        store: Store = StoreDep,
        _key: Any = Depends(require("score")),
    ) -> ScoreResult:
        """Score one ticket: models, then rules -> priority, team, deadlines and why."""
        return score_and_store(runtime_now, store, [ticket])[0]

    @app.post(
        "/v1/score/batch",
        response_model=ScoreBatchResult,
        tags=["scoring"],
        responses=ERRORS,
        description=f"Score up to `max_batch` tickets in one call ({settings.max_batch} here).",
    )
    def score_batch(
        batch: TicketBatch,
        runtime_now: Runtime = RuntimeDep,
        store: Store = StoreDep,
        _key: Any = Depends(require("score")),
    ) -> ScoreBatchResult:
        if len(batch.tickets) > settings.max_batch:
            raise _invalid(["body", "tickets"], f"at most {settings.max_batch} tickets per call")
        return ScoreBatchResult(results=score_and_store(runtime_now, store, batch.tickets))

    @app.post(
        "/v1/feedback",
        response_model=FeedbackAck,
        tags=["feedback"],
        responses={**ERRORS, 409: {"model": Problem, "description": "Same ids, different content"}},
    )
    def feedback(
        event: Feedback,
        runtime_now: Runtime = RuntimeDep,
        store: Store = StoreDep,
        _key: Any = Depends(require("feedback")),
    ) -> FeedbackAck | JSONResponse:
        """Record what an agent finally decided for a ticket. Idempotent by (ticket_id, event_id)."""
        allowed = _allowed_values(runtime_now)
        for name, values in allowed.items():
            value = getattr(event, name)
            if value is not None and value not in values:
                raise _invalid(["body", name], f"{value!r} is not one of {sorted(values)}")
        try:
            result = store.record_feedback(event.model_dump())
        except FeedbackConflict as error:
            return JSONResponse({"detail": str(error)}, status_code=409)
        metrics.feedback.labels(str(result.stored).lower()).inc()
        return FeedbackAck(ticket_id=event.ticket_id, event_id=event.event_id, stored=result.stored)

    @app.get("/v1/model", response_model=ModelInfo, tags=["models"], responses=ERRORS)
    def model(runtime_now: Runtime = RuntimeDep, _key: Any = Depends(require("score"))) -> ModelInfo:
        """The models in use: registry name, version, alias, training run, data digest, test metrics."""
        return runtime_now.info

    @app.post("/v1/admin/reload", response_model=ReloadResult, tags=["admin"], responses=ERRORS)
    def admin_reload(request: Request, _key: Any = Depends(require("admin"))) -> ReloadResult:
        """Load the models the alias points at now and switch to them; requests in flight finish
        on the models they started with."""
        try:
            return reload(request.app)
        except UrgencyError as error:
            return JSONResponse(
                {"detail": f"reload failed, still serving the old models: {error}"}, status_code=503
            )  # type: ignore[return-value]

    @app.get(
        "/v1/reports/agreement",
        tags=["reports"],
        response_class=HTMLResponse,
        response_model=None,
        # The page is HTML, its errors JSON: stated per response, since FastAPI would give a
        # `model` the route's media type.
        responses={
            **{code: _as_json(spec["description"], "Problem") for code, spec in ERRORS.items()},
            404: _as_json("No decided ticket in the period", "Problem"),
            422: _as_json("since or until is not an ISO 8601 date", "HTTPValidationError"),
        },
    )
    def agreement_report(
        since: str | None = None,
        until: str | None = None,
        runtime_now: Runtime = RuntimeDep,
        store: Store = StoreDep,
        _key: Any = Depends(require("admin")),
    ) -> HTMLResponse | JSONResponse:
        """The agreement report over the tickets scored in the period that agents decided on
        (`until`: a date is included): the page `urgency report agreement` writes."""
        from urgency.agreement import EmptyReport
        from urgency.report import PeriodError, figures_from_store, parse_period, render_html, report_settings

        try:
            start, end = parse_period(since, until)
        except PeriodError as error:
            raise _invalid(["query", error.name], str(error)) from None
        settings_now = report_settings(runtime_now.params, runtime_now.rules)
        try:
            figures = figures_from_store(
                store, settings_now, source="the service's store", since=start, until=end
            )
        except EmptyReport as error:
            return JSONResponse({"detail": str(error)}, status_code=404)
        return HTMLResponse(render_html(figures))

    @app.get("/health/live", response_model=Health, tags=["health"])
    def live() -> Health:
        return Health(status="ok")

    @app.get("/health/ready", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    def ready(request: Request) -> Health | JSONResponse:
        models_ok = request.app.state.runtime is not None
        store: Store | None = getattr(request.app.state, "store", None)
        database_ok = store is not None and store.ping()
        health = Health(
            status="ok" if models_ok and database_ok else "unavailable",
            models=models_ok,
            database=database_ok,
        )
        if models_ok and database_ok:
            return health
        return JSONResponse(health.model_dump(), status_code=503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    generated = app.openapi

    def openapi() -> dict[str, Any]:
        """The schema with what this deployment accepts: its batch limit, and the labels, levels
        and teams of the models and rules it serves (they change with a reload)."""
        schema = copy.deepcopy(generated())
        components = schema["components"]["schemas"]
        components["TicketBatch"]["properties"]["tickets"]["maxItems"] = settings.max_batch
        runtime_now: Runtime | None = app.state.runtime
        if runtime_now is not None:
            for name, values in _allowed_values(runtime_now).items():
                components["Feedback"]["properties"][name]["anyOf"][0]["enum"] = sorted(values)
            names = components["Ticket"]["properties"]["fields"]["propertyNames"]
            names["not"] = {"enum": sorted(runtime_now.reserved_fields())}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    # Outermost: the metrics see every response, the 413s included.
    app.add_middleware(FunctionMiddleware, wrap=metrics.middleware)
    return app


def _as_json(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _allowed_values(runtime_now: Runtime) -> dict[str, set[str]]:
    allowed = {head: set(model.labels) for head, model in runtime_now.models.items()}
    allowed["priority"] = set(runtime_now.rules.levels)
    allowed["team"] = {team.name for team in runtime_now.rules.spec.teams}
    return allowed

"""The prediction service: helpdesks score tickets and report what their agents decided.

Run it with `urgency serve` (uvicorn). Models load once, in the lifespan; every scored ticket and
every feedback event is stored (`urgency.store`). The endpoints are in `serve.routes`, what they
share in `serve.state.ServiceState` (`app.state.service`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi_offline import FastAPIOffline

from serve.errors import add_error_handlers
from serve.middleware import BodyLimit, FunctionMiddleware
from serve.openapi import deployment_schema
from serve.routes import ROUTERS
from serve.routes.scoring import one_ticket_scoring
from serve.runtime import Runtime
from serve.settings import ServiceSettings
from serve.state import ServiceState
from urgency.errors import UrgencyError
from urgency.store import Store, check_schema, make_engine


def create_app(settings: ServiceSettings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The service. `runtime`: models already loaded (else the lifespan loads them)."""
    state = ServiceState(settings or ServiceSettings())
    # /docs with its Swagger UI files served by the service itself (under /static-offline-docs):
    # FastAPI's default page loads them from a CDN, blank without internet. No /redoc: its page
    # still fetches a logo from redoc.ly.
    app = FastAPIOffline(
        redoc_url=None,
        title="urgency",
        version="1",
        summary="Ticket priority, deadlines and team: learned urgency, category and sentiment plus rules.",
        lifespan=lambda _app: serving(state, runtime),
    )
    app.state.service = state
    add_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        max_bytes=state.settings.max_body_bytes,
        read_timeout=state.settings.body_timeout_seconds,
    )
    for router in ROUTERS:
        app.include_router(router)
    generated = app.openapi

    def openapi() -> dict[str, Any]:
        return deployment_schema(generated(), state)

    app.openapi = openapi  # type: ignore[method-assign]
    # Outermost: the metrics see every response, the 413s included.
    app.add_middleware(FunctionMiddleware, wrap=state.metrics.middleware)
    return app


@asynccontextmanager
async def serving(state: ServiceState, preloaded: Runtime | None) -> AsyncIterator[None]:
    """The lifespan: refuse bad settings, open the store, load the models (unless `preloaded`),
    watch the registry alias (unless turned off or serving a folder), send the outbox's
    write-backs (when a helpdesk credential is set); close the store at the end."""
    settings = state.settings
    problems = settings.problems()
    if problems:
        raise UrgencyError("refusing to start: " + "; ".join(problems))
    engine = make_engine(settings.store_url())
    check_schema(engine)
    state.store = Store(engine)
    state.api_keys = settings.effective_keys()
    state.swap(preloaded or await run_in_threadpool(state.load))
    state.one_ticket = one_ticket_scoring(state)
    # The repeat-issue clusters start with the store's tickets of the last window (rules
    # `clusters`; nothing without the section).
    await run_in_threadpool(state.tracker, state.runtime)
    # The similar-tickets index (rules `similar_tickets`, `duplicates`): its file caught up with
    # the store, or rebuilt from it.
    await run_in_threadpool(state.similar_index, state.runtime)
    tasks = []
    if settings.check_seconds() > 0:
        tasks.append(asyncio.create_task(state.watch_alias()))
    if settings.outbox_seconds > 0 and (settings.helpdesk_credentials or settings.alert_webhook_url):
        tasks.append(asyncio.create_task(state.send_write_backs()))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await run_in_threadpool(state.save_similar_index)
        engine.dispose()

"""What every request passes through: the body-size limit (and read timeout) and the Prometheus
metrics.

Plain ASGI (not route dependencies), so they see every request, including ones that never reach
a route, and a chunked body is counted as it arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import status
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serve.schemas import ScoreResult

# The methods counted by name in the metrics; any other is counted as OTHER.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BodyLimit:
    """413 for a request body over `max_bytes`, whether or not it says its length up front
    (a chunked body is counted as it arrives, and never read past the limit); 408 for a body
    not complete within `read_timeout` seconds."""

    def __init__(self, app: Any, max_bytes: int, read_timeout: float = 15.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(scope, receive, send)
        chunks: list[bytes] = []
        size = 0
        # The whole body within `read_timeout`: a client that declares more than it sends must
        # not hold a connection (and a worker's attention) open for ever.
        deadline = time.monotonic() + self.read_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except TimeoutError:
                return await self._too_slow(scope, receive, send)
            if message["type"] != "http.request":
                break  # the client went away
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._too_large(scope, receive, send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: dict, receive: Callable, send: Callable) -> None:
        response = JSONResponse(
            {"detail": f"request body over {self.max_bytes} bytes"},
            status_code=status.HTTP_413_CONTENT_TOO_LARGE,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

    async def _too_slow(self, scope: dict, receive: Callable, send: Callable) -> None:
        response = JSONResponse(
            {"detail": f"request body not received within {self.read_timeout:g} seconds"},
            status_code=status.HTTP_408_REQUEST_TIMEOUT,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "urgency_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "urgency_request_seconds",
            "Request latency",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.predictions = Counter(
            "urgency_predictions", "Predicted labels", ["head", "label"], registry=self.registry
        )
        self.priorities = Counter(
            "urgency_priorities", "Final priorities", ["priority"], registry=self.registry
        )
        self.scored = Counter("urgency_scored_tickets", "Tickets scored", registry=self.registry)
        # Concurrent one-ticket requests are scored together (`serve.coalesce`): how many per call.
        self.call_tickets = Histogram(
            "urgency_scoring_call_tickets",
            "Tickets per scoring call (a batch, or concurrent requests scored together)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.triaged = Counter(
            "urgency_triage_tickets", "Tickets sent to human triage", registry=self.registry
        )
        self.triage_rate = Gauge(
            "urgency_triage_rate", "Share of scored tickets sent to human triage", registry=self.registry
        )
        self.feedback = Counter(
            "urgency_feedback_events", "Feedback events", ["stored"], registry=self.registry
        )
        # Tickets given an agent (`assigned`: true) or left in the team's queue, per strategy.
        self.assignments = Counter(
            "urgency_assignments", "Tickets assigned", ["strategy", "assigned"], registry=self.registry
        )
        self.model_version = Gauge(
            "urgency_model_version_info",
            "Model version in use (1)",
            ["head", "version"],
            registry=self.registry,
        )

    def observe_results(self, results: list[ScoreResult]) -> None:
        for result in results:
            self.scored.inc()
            self.priorities.labels(result.priority).inc()
            if result.needs_human_triage:
                self.triaged.inc()
            for head in ("urgency", "category", "sentiment"):
                label = getattr(result, head)
                if label is not None:
                    self.predictions.labels(head, label).inc()
        scored = self.scored._value.get()
        self.triage_rate.set(self.triaged._value.get() / scored if scored else 0.0)

    def show_versions(self, versions: dict[str, str]) -> None:
        self.model_version.clear()
        for head, version in versions.items():
            self.model_version.labels(head, version).set(1)

    def middleware(self, app: Any) -> Callable:
        async def measured(scope: dict, receive: Callable, send: Callable) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)
            started = time.perf_counter()
            status_code = 500

            async def send_status(message: dict) -> None:
                nonlocal status_code
                if message["type"] == "http.response.start":
                    status_code = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_status)
            finally:
                # Every label value from a bounded set, whatever a client sends: the route
                # template (not the raw path), a known method or OTHER.
                route = getattr(scope.get("route"), "path", "unmatched")
                method = scope["method"] if scope["method"] in METHODS else "OTHER"
                self.requests.labels(method, route, str(status_code)).inc()
                self.latency.labels(route).observe(time.perf_counter() - started)

        return measured


class FunctionMiddleware:
    """Adapts a function middleware (app -> app) to Starlette's add_middleware."""

    def __init__(self, app: Any, wrap: Callable[[Any], Callable]) -> None:
        self.handle = wrap(app)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> Awaitable[None]:
        return await self.handle(scope, receive, send)

"""The service's endpoints, one router per resource (`serve.app` includes them in this order)."""

from __future__ import annotations

from fastapi import APIRouter

from serve.routes import (
    admin,
    assign,
    backlog,
    clusters,
    feedback,
    health,
    models,
    reports,
    scoring,
    webhooks,
)

# The order of the OpenAPI schema's paths and of the docs page.
ROUTERS: tuple[APIRouter, ...] = (
    scoring.router,
    feedback.router,
    webhooks.router,
    assign.router,
    models.router,
    admin.router,
    reports.router,
    backlog.router,
    clusters.router,
    health.router,
)

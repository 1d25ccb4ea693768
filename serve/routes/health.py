"""Probes and metrics: /health/live, /health/ready, /metrics (no API key: load balancers and
Prometheus call them)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serve.deps import ServiceDep
from serve.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health/live", response_model=Health)
def live() -> Health:
    return Health(status="ok")


@router.get("/health/ready", response_model=Health, responses={503: {"model": Health}})
def ready(service: ServiceDep) -> Health | JSONResponse:
    models_ok = service.runtime is not None
    database_ok = service.store is not None and service.store.ping()
    health = Health(
        status="ok" if models_ok and database_ok else "unavailable",
        models=models_ok,
        database=database_ok,
    )
    if models_ok and database_ok:
        return health
    return JSONResponse(health.model_dump(), status_code=503)


@router.get("/metrics", response_class=Response)
def prometheus(service: ServiceDep) -> Response:
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

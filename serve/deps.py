"""Request dependencies: the service state, the API key and its scopes, the current runtime, the store.

Routes declare them as annotated types (`runtime: RuntimeDep`). FastAPI solves a route's
dependencies in the order they are declared, so routes put the runtime (503) before the key
(401/403), as they always have.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from serve.runtime import Runtime
from serve.settings import ApiKey
from serve.state import ServiceState
from urgency.keys import hash_key
from urgency.store import Store

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key with the scope the endpoint needs."
)


def service_state(request: Request) -> ServiceState:
    """The app's state (`serve.app.create_app` stores it as `app.state.service`)."""
    return request.app.state.service


ServiceDep = Annotated[ServiceState, Depends(service_state)]


def authenticate(keys: tuple[ApiKey, ...], presented: str | None) -> ApiKey:
    if not presented:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing API key (header X-API-Key)", {"WWW-Authenticate": "ApiKey"}
        )
    digest = hash_key(presented)
    found = None
    # Compare with every key in constant time, without stopping at a match: the time taken
    # tells nothing about the key or how many keys there are before it.
    for key in keys:
        if hmac.compare_digest(key.sha256, digest):
            found = key
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API key", {"WWW-Authenticate": "ApiKey"})
    return found


def require(scope: str) -> Callable[..., ApiKey]:
    """A dependency that lets only keys with `scope` through (401 no/wrong key, 403 no scope)."""

    def dependency(service: ServiceDep, presented: str | None = Security(api_key_header)) -> ApiKey:
        key = authenticate(service.api_keys, presented)
        if scope not in key.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"API key {key.name!r} lacks the {scope!r} scope")
        return key

    return dependency


def current_runtime(service: ServiceDep) -> Runtime:
    """The runtime at the start of the request: the request keeps it even if a reload swaps
    in another one meanwhile."""
    runtime = service.runtime
    if runtime is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "models are not loaded")
    return runtime


def current_store(service: ServiceDep) -> Store:
    # The lifespan opens the store before it loads the models, so a route that has a runtime
    # (declared first) has a store: this answer is for the type checker's sake.
    if service.store is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the store is not open")
    return service.store


RuntimeDep = Annotated[Runtime, Depends(current_runtime)]
StoreDep = Annotated[Store, Depends(current_store)]
# One per scope: the key a route needs (routes that only check it name the parameter `_key`).
ScoreKey = Annotated[ApiKey, Depends(require("score"))]
FeedbackKey = Annotated[ApiKey, Depends(require("feedback"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]

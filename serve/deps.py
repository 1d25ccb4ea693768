"""Request dependencies: the API key and its scopes, the current runtime, the store."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

from serve.runtime import Runtime
from serve.settings import ApiKey
from urgency.keys import hash_key
from urgency.store import Store

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key with the scope the endpoint needs."
)


def authenticate(request: Request, presented: str | None) -> ApiKey:
    if not presented:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing API key (header X-API-Key)", {"WWW-Authenticate": "ApiKey"}
        )
    digest = hash_key(presented)
    found = None
    # Compare with every key in constant time, without stopping at a match: the time taken
    # tells nothing about the key or how many keys there are before it.
    for key in request.app.state.api_keys:
        if hmac.compare_digest(key.sha256, digest):
            found = key
    if found is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API key", {"WWW-Authenticate": "ApiKey"})
    return found


def require(scope: str) -> Callable[..., ApiKey]:
    """A dependency that lets only keys with `scope` through (401 no/wrong key, 403 no scope)."""

    def dependency(request: Request, presented: str | None = Security(api_key_header)) -> ApiKey:
        key = authenticate(request, presented)
        if scope not in key.scopes:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"API key {key.name!r} lacks the {scope!r} scope")
        return key

    return dependency


def current_runtime(request: Request) -> Runtime:
    """The runtime at the start of the request: the request keeps it even if a reload swaps
    in another one meanwhile."""
    runtime = request.app.state.runtime
    if runtime is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "models are not loaded")
    return runtime


def current_store(request: Request) -> Store:
    return request.app.state.store


RuntimeDep = Depends(current_runtime)
StoreDep = Depends(current_store)

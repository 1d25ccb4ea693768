"""Errors: what every error response looks like, and how the routes document them.

An error is `{"detail": ...}`: a message and, for validation, where; never a stack trace, never
the input echoed back.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.schemas import Problem

log = logging.getLogger("urgency.serve")

# The error responses of every authenticated route (for the OpenAPI schema).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body is not JSON"},
    401: {"model": Problem, "description": "Missing or invalid API key"},
    403: {"model": Problem, "description": "The API key lacks the scope"},
    413: {"model": Problem, "description": "Request body too large"},
    503: {"model": Problem, "description": "Models not loaded"},
}


def as_json(description: str, schema: str) -> dict[str, Any]:
    """A JSON error response stated in full: for a route whose own media type is not JSON,
    since FastAPI would give a `model` the route's media type."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def invalid(loc: list[str | int], message: str) -> RequestValidationError:
    """A 422 for what a schema cannot say (it depends on the models or settings served)."""
    return RequestValidationError([{"loc": loc, "msg": message, "type": "value_error"}])


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
    # Connection: close: after an unexpected error the server drops the connection; saying so
    # lets a keep-alive client know instead of meeting a reset on its next request.
    return JSONResponse(
        {"detail": "internal error; the service log has the details"},
        status_code=500,
        headers={"Connection": "close"},
    )


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)

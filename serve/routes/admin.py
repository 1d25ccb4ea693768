"""POST /v1/admin/reload: switch to the models the registry alias points at now."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from serve.deps import AdminKey, ServiceDep
from serve.errors import ERRORS
from serve.schemas import ReloadResult
from urgency.errors import UrgencyError

router = APIRouter(tags=["admin"])


@router.post("/v1/admin/reload", response_model=ReloadResult, responses=ERRORS)
def admin_reload(service: ServiceDep, _key: AdminKey) -> ReloadResult | JSONResponse:
    """Load the models the alias points at now and switch to them; requests in flight finish
    on the models they started with. This worker only (`pid`): with several workers, the
    others follow by their own alias check (`workers` says within how long)."""
    try:
        return service.reload()
    except UrgencyError as error:
        return JSONResponse(
            {"detail": f"reload failed, still serving the old models: {error}"}, status_code=503
        )

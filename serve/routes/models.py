"""GET /v1/model: what the service serves with."""

from __future__ import annotations

import os

from fastapi import APIRouter

from serve.deps import RuntimeDep, ScoreKey
from serve.errors import ERRORS
from serve.schemas import ModelInfo

router = APIRouter(tags=["models"])


@router.get("/v1/model", response_model=ModelInfo, responses=ERRORS)
def model(runtime_now: RuntimeDep, _key: ScoreKey) -> ModelInfo:
    """The models in use: registry name, version, alias, training run, data digest, test metrics;
    the versions and the worker process (pid) that answered."""
    return runtime_now.info.model_copy(update={"versions": runtime_now.versions, "pid": os.getpid()})

"""Start the prediction service under uvicorn (`urgency serve`).

Before uvicorn starts, the settings are checked and the store is migrated or checked, so a bad
setting or an old database is a clear error rather than a server that fails its first request.
One process serves the app it was given; worker processes each build their own app from the same
settings, which reach them as URGENCY_* variables.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve.settings import ServiceSettings
from urgency.errors import ParamsError
from urgency.parallel import default_jobs


@dataclass(frozen=True)
class Startup:
    """What the service starts with, told before uvicorn takes over the process."""

    store: str  # the store's URL without its password
    local_dev_key: bool  # local mode without configured keys: the development key has every scope


def service_settings(params_path: Path, **overrides: Any) -> ServiceSettings:
    """The settings from URGENCY_* variables, with `overrides` (None: not given) on top; an
    invalid variable is a params error (exit 3), not a stack trace."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from urgency.config import format_validation_error

    try:
        return ServiceSettings(params=params_path, **{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        raise ParamsError(format_validation_error(error, "service settings (URGENCY_* variables)")) from None
    except SettingsError as error:
        # A variable that is not even readable, e.g. URGENCY_API_KEYS that is not JSON.
        raise ParamsError(f"service settings (URGENCY_* variables): {_unreadable(error)}") from None


def _unreadable(error: Exception) -> str:
    """pydantic-settings' message names the field (`error parsing value for field "api_keys"
    from source "EnvSettingsSource"`): say which variable, and never repeat its value."""
    import re

    found = re.search(r'field "([a-z_]+)"', str(error))
    variable = f"URGENCY_{found.group(1).upper()}" if found else "a variable"
    hint = ' (a JSON list of {"name", "sha256", "scopes"})' if variable == "URGENCY_API_KEYS" else ""
    return f"{variable} is not readable{hint}"


def default_workers() -> int:
    """`urgency serve`'s worker processes when not given: one per two cores. A worker scores its
    concurrent requests in one call, its encoder on two threads. Measured on 2 cores with
    bench/bench_serve_workers.py (medians of 3 alternating rounds): one worker 17.9 requests/s
    at one connection (p50 54 ms) and 58.2 at 16; two workers (one encoder thread each) 9.6
    (p50 100 ms) and 37.2, in twice the memory."""
    return max(1, default_jobs() // 2)


def worker_environment(settings: ServiceSettings, workers: int = 1) -> dict[str, str]:
    """The variables from which each worker process rebuilds `settings` (paths made absolute:
    a worker must not depend on the directory it starts in), and each worker's share of the
    cores for the numeric libraries (unless OMP_NUM_THREADS is set): workers that each ran a
    thread per core would fight over the cores."""
    environment = {
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, default_jobs() // workers))),
        "URGENCY_PARAMS": str(settings.params.resolve()),
        "URGENCY_DATABASE_URL": settings.store_url(),
        # A progress bar per model download, every 10 s alias check and reload, is log noise.
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    if settings.model_dir is not None:
        environment["URGENCY_MODEL_DIR"] = str(settings.model_dir.resolve())
    return environment


def run(
    settings: ServiceSettings,
    *,
    host: str,
    port: int,
    workers: int = 1,
    migrate: bool = True,
    on_ready: Callable[[Startup], None] | None = None,
) -> None:
    """Check the settings and the store, then serve until stopped (blocks)."""
    import uvicorn

    from serve.app import create_app
    from serve.runtime import load_runtime, resolve_served
    from urgency.config import load_params
    from urgency.store import check_schema, make_engine, redact, upgrade

    problems = settings.problems()
    if problems:
        raise ParamsError("refusing to start: " + "; ".join(problems))
    engine = make_engine(settings.store_url())
    if migrate:
        upgrade(engine)
    check_schema(engine)
    engine.dispose()
    if on_ready:
        on_ready(Startup(redact(settings.store_url()), settings.mode == "local" and not settings.api_keys))
    if workers == 1:
        # Load here, so a missing model is a clear error before the server starts.
        runtime = load_runtime(
            load_params(settings.params), model_dir=settings.model_dir, alias=settings.model_alias
        )
        uvicorn.run(create_app(settings, runtime), host=host, port=port, log_level="info")
        return
    # Resolve (not load) the models here, so a missing one is a clear error before the workers
    # start; each worker loads them in its lifespan.
    resolve_served(load_params(settings.params), model_dir=settings.model_dir, alias=settings.model_alias)
    os.environ.update(worker_environment(settings, workers))
    uvicorn.run(
        "serve.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        log_config=worker_log_config(),
    )


# The service's own log lines as `urgency.cli.common.setup_logging` formats them in one process.
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def worker_log_config() -> dict[str, Any]:
    """uvicorn's logging configuration plus the service's loggers. A worker process starts
    afresh and applies only this (the CLI's `setup_logging` ran in the parent): without it a
    worker's `urgency.*` INFO lines (models served, the similar-tickets index opened or rebuilt,
    the outbox) are lost and its warnings come out unformatted."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["urgency"] = {"format": LOG_FORMAT}
    config["handlers"]["urgency"] = {
        "formatter": "urgency",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    config["root"] = {"handlers": ["urgency"], "level": "WARNING"}
    config["loggers"]["urgency"] = {"level": "INFO"}  # propagates to the root's handler
    return config

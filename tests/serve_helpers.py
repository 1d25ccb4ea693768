"""Building the service for tests: a migrated database, settings, a running uvicorn process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from serve.settings import ServiceSettings
from tests.postgres import free_port
from urgency.store import Store, make_engine, upgrade

ALL = {"X-API-Key": "local-dev-key"}
TICKET = {
    "ticket_id": "T-1",
    "subject": "server down",
    "body": "production broken critical outage",
    "created_at": "2026-03-02T09:00:00Z",
    "fields": {"plan": "enterprise", "service_down": True},
}


def move_champion(client: Any, versions: dict[str, str]) -> None:
    """Point each head's champion alias at its version in `versions` (a promotion)."""
    for head, version in versions.items():
        client.set_registered_model_alias(f"ticket-{head}", "champion", version)


def migrated(url: str) -> str:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def rows(database: str, table: sa.Table) -> list[dict[str, Any]]:
    """Every row of a store table (a fresh engine: the app's own may be closed by now)."""
    engine = make_engine(database)
    try:
        return Store(engine).rows(table)
    finally:
        engine.dispose()


def settings(params: Path, database_url: str, **overrides: Any) -> ServiceSettings:
    return ServiceSettings(params=params, database_url=migrated(database_url), **overrides)


@contextmanager
def running_server(
    params: Path, database_url: str, *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> Iterator[str]:
    """`urgency serve` in a subprocess on a free loopback port; yields its base URL."""
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "urgency"),
        "serve",
        "--params",
        str(params),
        "--port",
        str(port),
        "--database-url",
        database_url,
        # One process unless the test asks for more: the default (a worker per core) would make
        # every test's start-up load the models once per core.
        *(() if "--workers" in args else ("--workers", "1")),
        *args,
    ]
    base = f"http://127.0.0.1:{port}"
    # A file, not a pipe: nobody reads a pipe while the test runs, and a full pipe would stop
    # the server at its next log line.
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"urgency serve exited with {process.returncode}:\n{log.read()}")
                try:
                    if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("urgency serve did not become ready in time")
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

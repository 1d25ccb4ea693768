"""A real `mlflow server` on 127.0.0.1 for the tests, stopped at the end."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.postgres import free_port


@contextmanager
def running_mlflow_server(backend_store_uri: str, artifacts: Path, log_path: Path) -> Iterator[str]:
    """`mlflow server` with this backend store and artifact root; yields its URL."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                *("server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
                *("--backend-store-uri", backend_store_uri),
                *("--artifacts-destination", str(artifacts)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start:\n" + log_path.read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)

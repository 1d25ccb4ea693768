"""A real Dask cluster for the tests: a `dask scheduler` and `dask worker` processes, every
server (scheduler, workers, nannies, their dashboards) bound to 127.0.0.1, all stopped at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

from tests.postgres import free_port

DASK = str(Path(sys.executable).parent / "dask")
LOOPBACK = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]


class DaskCluster:
    def __init__(self, folder: Path, *, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        # Test helpers the tests send to workers live in `tests`, which workers import by name;
        # a PYTHONPATH already set (a checkout's own `src`) stays behind it.
        path = os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
        )
        self.env = {**os.environ, "PYTHONPATH": path, **(env or {})}
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []

    def _spawn(self, name: str, command: list[str]) -> None:
        log = self.folder / f"{name}.log"
        self._logs.append(log)
        with log.open("wb") as out:
            # Its own process group: stop() can end the worker processes a nanny spawned, too.
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        self.processes.append(process)

    def start(self, workers: int = 2, worker_args: tuple[str, ...] = ()) -> DaskCluster:
        self._spawn("scheduler", [DASK, "scheduler", *LOOPBACK, "--port", str(self.port)])
        for i in range(workers):
            self._spawn(
                f"worker{i}",
                [
                    *(DASK, "worker", self.address, *LOOPBACK, "--nthreads", "1", "--name", f"w{i}"),
                    *("--local-directory", str(self.folder / f"worker{i}"), *worker_args),
                ],
            )
        self.wait_for_workers(workers)
        return self

    def wait_for_workers(self, count: int, timeout: float = 60) -> None:
        from distributed import Client

        deadline = time.monotonic() + timeout
        with Client(self.address, timeout="30s") as client:
            while len(client.scheduler_info()["workers"]) < count:
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                    raise RuntimeError(f"Dask cluster did not start:\n{self.logs()}")
                time.sleep(0.2)

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-2000:]}" for log in self._logs if log.exists())

    def stop(self) -> None:
        # Workers first (their nannies stop the worker processes), then the scheduler.
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            # A nanny busy restarting a worker it just killed may not stop in time.
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            # Whatever is left of the group (a worker whose nanny did not stop it) ends here.
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

"""Batch scoring of N tickets three ways: the plain local loop, a LocalCluster, and a `dask
scheduler` with two `dask worker` processes. All three run `urgency predict` on the same N
tickets (split into Parquet files, one task per file) with the exported champion models.

For each: wall seconds, CPU seconds summed over every process involved (the CLI, the cluster's
scheduler, nannies and workers; psutil samples the process trees), the peak of their summed RSS,
and the per-core efficiency against the plain loop: plain wall / (wall x worker cores). 100%
means the cluster's cores are as productive as the one core of the plain loop; the issue's goal
is >= 85%. The three outputs are checked to be identical. "other jobs CPU s"
is the CPU the machine spent on anything else meanwhile: when it is not near 0, other jobs shared
the cores and the wall times are on the slow side.

Run benchmarks one at a time (the machine is shared); 1,000,000 tickets take about 11 minutes
here (the three modes):

    flock /tmp/urgency-bench.lock .venv/bin/python bench/bench_distributed.py --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil

BIN = Path(sys.executable).parent


def make_tickets(rows: int, folder: Path, files: int) -> None:
    """N tickets sampled (with repeats) from the demo data's texts, in `files` Parquet files."""
    from urgency.config import load_params
    from urgency.data import load_tickets

    params = load_params("params.yaml")
    tickets = load_tickets(params.data.sources).tickets[["id", "subject", "body"]]
    sample = tickets.sample(n=rows, replace=rows > len(tickets), random_state=0)
    sample = sample.assign(id=[f"B{i}" for i in range(rows)]).reset_index(drop=True)
    folder.mkdir(parents=True)
    size = -(-rows // files)
    for i in range(files):
        sample.iloc[i * size : (i + 1) * size].to_parquet(folder / f"tickets-{i:03d}.parquet", index=False)


class Monitor:
    """Samples CPU time and RSS of process trees until stopped."""

    # Once a second: CPU times add up, so only a process that ends between two samples loses
    # its last second (an idle worker at the cluster's close). Sampling every 0.2 s cost this
    # process 2 to 3% of a core, taken from the cluster modes' two busy cores and not from the
    # plain loop's one.
    def __init__(self, roots: list[int], interval: float = 1.0) -> None:
        self.roots = roots
        self.interval = interval
        self.cpu: dict[int, float] = {}
        self.baseline: dict[int, float] = {}
        self.peak_rss = 0
        self._busy_at_start = self._machine_busy()
        self.other_cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        # Long-lived processes (a standing cluster) count only the CPU they spend from now on.
        for process in self._processes():
            self.baseline[process.pid] = self._cpu_of(process) or 0.0

    def _processes(self) -> list[psutil.Process]:
        found = []
        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                found += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        return found

    @staticmethod
    def _machine_busy() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    @staticmethod
    def _cpu_of(process: psutil.Process) -> float | None:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            return None
        return times.user + times.system

    def _sample(self) -> None:
        rss = 0
        for process in self._processes():
            cpu = self._cpu_of(process)
            try:
                rss += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            if cpu is not None:
                self.cpu[process.pid] = cpu
        self.peak_rss = max(self.peak_rss, rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def start(self) -> Monitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()
        # CPU the machine spent on anything else meanwhile: other jobs sharing the cores.
        self.other_cpu = max(0.0, self._machine_busy() - self._busy_at_start - self.cpu_seconds())

    def cpu_seconds(self) -> float:
        return sum(cpu - self.baseline.get(pid, 0.0) for pid, cpu in self.cpu.items())


@dataclass
class Figures:
    mode: str
    cores: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    other_cpu_seconds: float


def run_mode(mode: str, cores: int, command: list[str], cluster_pids: list[int]) -> Figures:
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    monitor = Monitor([process.pid, *cluster_pids]).start()
    _, stderr = process.communicate()
    seconds = time.perf_counter() - started
    monitor.stop()
    if process.returncode:
        raise SystemExit(f"{mode} failed:\n{stderr.decode()[-3000:]}")
    return Figures(mode, cores, seconds, monitor.cpu_seconds(), monitor.peak_rss / 2**20, monitor.other_cpu)


def start_cluster(folder: Path, workers: int) -> tuple[list[subprocess.Popen[bytes]], str]:
    from distributed import Client

    port = 8786 + os.getpid() % 1000
    address = f"tcp://127.0.0.1:{port}"
    loopback = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
    log = (folder / "cluster.log").open("wb")
    # The workers started as the README says: no statistical profiler (urgency.distributed's
    # LOCAL_CLUSTER_CONFIG turns it off in the local cluster the same way).
    worker_env = {**os.environ, "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}
    processes = [
        subprocess.Popen(
            [str(BIN / "dask"), "scheduler", *loopback, "--port", str(port)], stdout=log, stderr=log
        )
    ]
    for i in range(workers):
        processes.append(
            subprocess.Popen(
                [
                    str(BIN / "dask"),
                    "worker",
                    address,
                    *loopback,
                    "--nthreads",
                    "1",
                    "--name",
                    f"w{i}",
                    "--local-directory",
                    str(folder / f"w{i}"),
                ],
                stdout=log,
                stderr=log,
                env=worker_env,
            )
        )
    with Client(address, timeout="60s") as client:
        client.wait_for_workers(workers, timeout=120)
    return processes, address


def stop_cluster(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        process.terminate()
    for process in processes:
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--files", type=int, default=20, help="Parquet files (= tasks) the rows are split into"
    )
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["plain", "local", "scheduler"])
    args = parser.parse_args()
    model_dir = str(Path(args.model_dir).resolve())
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        folder = Path(tmp)
        make_tickets(args.rows, folder / "tickets", args.files)
        pattern = str(folder / "tickets" / "*.parquet")

        def command(output: str, *extra: str) -> list[str]:
            return [
                str(BIN / "urgency"),
                "predict",
                "--model-dir",
                model_dir,
                "-i",
                pattern,
                "-o",
                output,
                *extra,
            ]

        results = []
        for mode in args.modes:
            output = str(folder / f"scored-{mode}")
            if mode == "plain":
                results.append(run_mode(mode, 1, command(output), []))
            elif mode == "local":
                # The LocalCluster starts inside the command: its start-up is part of the time.
                results.append(
                    run_mode(mode, os.cpu_count() or 1, command(output, "--scheduler", "local"), [])
                )
            else:
                processes, address = start_cluster(folder, args.workers)
                try:
                    pids = [process.pid for process in processes]
                    results.append(
                        run_mode(mode, args.workers, command(output, "--scheduler", address), pids)
                    )
                finally:
                    stop_cluster(processes)
            print(f"{mode}: {results[-1]}", file=sys.stderr, flush=True)
        reference = pd.read_parquet(folder / f"scored-{args.modes[0]}")
        for mode in args.modes[1:]:
            pd.testing.assert_frame_equal(
                pd.read_parquet(folder / f"scored-{mode}"), reference, check_exact=True
            )
        assert len(reference) == args.rows

    plain = next((r for r in results if r.mode == "plain"), None)
    print(f"{args.rows:,} tickets in {args.files} Parquet files, {os.cpu_count()} cores; outputs identical")
    print(
        f"{'mode':<10} {'cores':>5} {'wall s':>8} {'tickets/s':>10} {'CPU s':>8} {'peak RSS MB':>12} "
        f"{'CPU vs plain':>13} {'per-core eff.':>14} {'other jobs CPU s':>17}"
    )
    for r in results:
        cpu_ratio = f"{r.cpu_seconds / plain.cpu_seconds:.2f}x" if plain else "-"
        efficiency = f"{plain.seconds / (r.seconds * r.cores):.0%}" if plain else "-"
        print(
            f"{r.mode:<10} {r.cores:>5} {r.seconds:>8.1f} {args.rows / r.seconds:>10.0f} "
            f"{r.cpu_seconds:>8.1f} {r.peak_rss_mb:>12.0f} {cpu_ratio:>13} {efficiency:>14} "
            f"{r.other_cpu_seconds:>17.1f}"
        )


if __name__ == "__main__":
    main()

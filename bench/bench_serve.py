"""Latency, throughput and peak memory of the prediction service, next to `mlflow models serve`.

Real HTTP on loopback with a real load generator: each server runs as its own process on
127.0.0.1, and a load generator as a subprocess posts a realistic ticket mix (texts of the
synthetic support tickets, metadata like data/demo_tickets.csv) with no wait between requests:
`wrk` (bench/wrk_serve.lua; Debian's `apt-get install wrk`), else locust (bench/locustfile_serve.py,
headless; `--load locust`). wrk is C and takes a few percent of a core; locust is Python and, on two
cores, takes a share of the CPU the servers compete for (more with our two workers than with
mlflow's one), so it under-states the faster server.

- `urgency serve` per model family (the registry champions, or an exported model folder):
  POST /v1/score at each --users, and POST /v1/score/batch with --batch-sizes tickets per call.
  Our service does more per ticket than a bare model server: three heads, the rules (priority,
  team, deadlines, explanation) and a database write (a temporary SQLite file, checked after the
  runs: one stored row per scored ticket).
- `mlflow models serve --env-manager local` on the urgency head alone (the same registered model),
  POST /invocations with the same texts, the same users and the same batch sizes.
- In process, no HTTP: the median time of one ticket through the urgency head alone, the three
  heads, then adding the MiniLM text signals, the rules, and the rest of a /v1/score call
  (similar tickets, duplicates, clusters, articles, the store write; a temporary SQLite file):
  where the time of one request goes.

Peak RSS is each server's process tree (psutil, sampled every 0.1 s) over its whole life, start-up
included. Figures are printed and written to bench/results/serve.txt. On a shared machine, run it
under the benchmark lock (flock /tmp/urgency-bench.lock ...) so no other benchmark runs meanwhile.

    .venv/bin/python bench/bench_serve.py [--params params.yaml]
        [--model-dir baseline=registry] [--model-dir embedding=DIR]
        [--mlflow-model baseline=models:/ticket-urgency@champion] [--mlflow-model embedding=DIR/urgency]
        [--users 1 4] [--batch-sizes 20 100] [--batch-users 2] [--seconds 20] [--load wrk|locust]

`registry` serves the params' registry champions; DIR is a folder from `urgency export-models`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile_serve.py"
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_serve.lua"
API_KEY = "local-dev-key"  # local mode's development key
BIN = Path(sys.executable).parent
WARM_UP = 3  # requests before each load run (not measured)


@dataclass
class Run:
    server: str
    endpoint: str
    batch: int
    users: int
    requests: int
    failures: int
    requests_per_s: float
    p50: float
    p95: float
    p99: float

    @property
    def tickets_per_s(self) -> float:
        return self.requests_per_s * self.batch


# ---------------------------------------------------------------------------------------------
# The ticket mix


def typed(value: str) -> Any:
    """A demo CSV cell as a client would send it in JSON (true -> true, 2000 -> 2000)."""
    if value in ("true", "false"):
        return value == "true"
    if value.isdigit():
        return int(value)
    return value or None


def sample_tickets(texts_csv: Path, demo_csv: Path, count: int) -> list[dict[str, Any]]:
    """`count` service tickets: support-ticket texts with the demo tickets' metadata fields."""
    texts = pd.read_csv(texts_csv, usecols=["subject", "body"], dtype=str, keep_default_na=False)
    texts = texts[texts["body"].str.strip() != ""]
    texts = texts.sample(n=count, replace=count > len(texts), random_state=0)
    demo = pd.read_csv(demo_csv, dtype=str, keep_default_na=False)
    metadata = demo.drop(columns=["ticket_id", "subject", "body", "created_at"])
    tickets = []
    for position, (subject, body) in enumerate(zip(texts["subject"], texts["body"], strict=True)):
        row = position % len(demo)
        tickets.append(
            {
                "ticket_id": f"B-{position}",
                "subject": subject[:1000] or None,
                "body": body[:20_000],
                "created_at": demo["created_at"].iloc[row],
                "fields": {name: typed(value) for name, value in metadata.iloc[row].items()},
            }
        )
    return tickets


def model_texts(tickets: list[dict[str, Any]], max_chars: int) -> list[str]:
    """What the urgency head reads for each ticket (the package's own text builder)."""
    from urgency.text import ticket_text

    frame = pd.DataFrame(tickets)
    return list(ticket_text(frame["subject"], frame["body"], max_chars))


def our_bodies(tickets: list[dict[str, Any]], batch: int) -> list[str]:
    if batch == 1:
        return [json.dumps(ticket) for ticket in tickets]
    groups = [tickets[start : start + batch] for start in range(0, len(tickets) - batch + 1, batch)]
    return [json.dumps({"tickets": group}) for group in groups]


def mlflow_bodies(texts: list[str], batch: int) -> list[str]:
    groups = [texts[start : start + batch] for start in range(0, len(texts) - batch + 1, batch)]
    return [
        json.dumps({"dataframe_split": {"columns": ["text"], "data": [[text] for text in group]}})
        for group in groups
    ]


# ---------------------------------------------------------------------------------------------
# Servers


class PeakRss(threading.Thread):
    """Samples the RSS of a process and all its descendants; keeps the largest sum."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for process in tree:
                with suppress(psutil.NoSuchProcess):  # exited between listing and sampling
                    total += process.memory_info().rss
            self.peak = max(self.peak, total)


@dataclass
class Server:
    name: str
    url: str
    rss: PeakRss


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Stop the server's whole process group (mlflow's CLI starts uvicorn as a child)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def running(
    name: str, command: list[str], ready_path: str, port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """Start a server in its own process group, wait until it is ready, always stop it."""
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    rss = PeakRss(process.pid)
    rss.start()
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after 300 s:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + ready_path, timeout=5) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        yield Server(name, url, rss)
    finally:
        stop(process)
        rss.done.set()
        rss.join()


def post(url: str, body: str, api_key: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["X-API-Key"] = api_key
    request = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=120) as reply:
        return json.loads(reply.read())


# ---------------------------------------------------------------------------------------------
# Load runs


def load_run(
    server: Server,
    endpoint: str,
    bodies: list[str],
    batch: int,
    *,
    users: int,
    seconds: int,
    api_key: str | None,
    folder: Path,
    load: str,
) -> Run:
    """Warm up with a few requests (checking the answers), then run the load generator."""
    count_key = "predictions" if endpoint == "/invocations" else "results"
    for body in bodies[:WARM_UP]:
        answer = post(server.url + endpoint, body, api_key)
        answered = 1 if batch == 1 and endpoint != "/invocations" else len(answer[count_key])
        if answered != batch:
            raise RuntimeError(f"{server.name} {endpoint}: {answered} answers for {batch} tickets")
    label = f"{server.name}-{endpoint.strip('/').replace('/', '-')}-{batch}-{users}"
    bodies_file = folder / f"{label}.jsonl"
    bodies_file.write_text("\n".join(bodies))
    env = {
        **os.environ,
        "URGENCY_BENCH_BODIES": str(bodies_file),
        "URGENCY_BENCH_PATH": endpoint,
        "URGENCY_BENCH_API_KEY": api_key or "",
    }
    run = wrk_run if load == "wrk" else locust_run
    return run(server, endpoint, batch, users, seconds, env, folder / label)


def wrk_run(
    server: Server, endpoint: str, batch: int, users: int, seconds: int, env: dict[str, str], prefix: Path
) -> Run:
    """wrk, one thread, `users` keep-alive connections; requests in flight when it stops are not
    counted (the server still answers and stores them)."""
    command = ["wrk", "-t1", f"-c{users}", f"-d{seconds}s", "--timeout", "120s", "-s", str(WRK_SCRIPT)]
    done = subprocess.run([*command, server.url], env=env, capture_output=True, text=True)
    summary = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not summary:
        output = done.stdout[-2000:] + done.stderr[-2000:]
        raise RuntimeError(f"wrk failed (exit {done.returncode}):\n{output}")
    result = json.loads(summary[-1])
    return Run(
        server=server.name,
        endpoint=endpoint,
        batch=batch,
        users=users,
        requests=result["requests"],
        failures=result["failures"],
        requests_per_s=result["requests"] / (result["duration_us"] / 1e6),
        p50=result["p50"] / 1000,
        p95=result["p95"] / 1000,
        p99=result["p99"] / 1000,
    )


def locust_run(
    server: Server, endpoint: str, batch: int, users: int, seconds: int, env: dict[str, str], prefix: Path
) -> Run:
    """locust headless; requests in flight at the end finish and are counted."""
    command = [
        str(BIN / "locust"),
        *["-f", str(LOCUSTFILE), "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s"],
        *["--stop-timeout", "30", "--only-summary", "--loglevel", "WARNING"],
        *["--host", server.url, "--json-file", str(prefix)],
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    # The final statistics (locust's --csv files may miss the last second of requests).
    stats = Path(f"{prefix}.json")
    if not stats.exists():
        raise RuntimeError(f"locust wrote no statistics (exit {done.returncode}):\n{done.stderr[-3000:]}")
    (entry,) = json.loads(stats.read_text())  # one endpoint per run
    # Response times as locust keeps them: a histogram of rounded milliseconds.
    histogram = sorted((float(ms), count) for ms, count in entry["response_times"].items())
    return Run(
        server=server.name,
        endpoint=endpoint,
        batch=batch,
        users=users,
        requests=entry["num_requests"],
        failures=entry["num_failures"],
        requests_per_s=entry["num_requests"] / (entry["last_request_timestamp"] - entry["start_time"]),
        p50=percentile(histogram, 0.50),
        p95=percentile(histogram, 0.95),
        p99=percentile(histogram, 0.99),
    )


def percentile(histogram: list[tuple[float, int]], fraction: float) -> float:
    total = sum(count for _, count in histogram)
    seen = 0
    for ms, count in histogram:
        seen += count
        if seen >= fraction * total:
            return ms
    return float("nan")


def stored_rows(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT count(*) FROM predictions").fetchone()[0]


# ---------------------------------------------------------------------------------------------
# In process: where the time of one ticket goes


def median_ms(action: Any, repeats: int) -> float:
    action()  # the first call pays for lazy set-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def in_process(
    params_path: Path, model_dir: Path | None, tickets: list[dict[str, Any]], folder: Path
) -> dict[str, float]:
    """Median ms of one ticket through each stage of a /v1/score call, each step adding a stage to
    the one before: where the time of one request goes, and how far a call could fall without
    the MiniLM (the text signals and the vectors of the similar tickets, duplicates, clusters and
    articles). Every call reads a ticket no call has read (a repeated text would be a duplicate,
    and its vector already known)."""
    from fastapi.testclient import TestClient

    from serve.app import create_app
    from serve.routes.scoring import score_and_store
    from serve.runtime import score_tickets, tickets_frame
    from serve.schemas import Ticket
    from serve.settings import ServiceSettings
    from urgency.config import SIGNALS_MODEL
    from urgency.predict import predict_frame, predict_proba
    from urgency.store import upgrade_database

    database_url = f"sqlite:///{folder / 'in-process.db'}"
    upgrade_database(database_url)
    settings = ServiceSettings(params=params_path, model_dir=model_dir, database_url=database_url)
    app = create_app(settings)
    turn = itertools.count()

    def ticket() -> Ticket:
        position = next(turn)
        fields = tickets[position % len(tickets)]
        return Ticket(**{**fields, "ticket_id": f"in-process-{position}"})

    steps: dict[str, float] = {}
    with TestClient(app):
        service = app.state.service
        runtime = service.runtime
        params = runtime.params
        column = runtime.rules.spec.created_at.column
        heads = {head: model for head, model in runtime.models.items() if head != SIGNALS_MODEL}
        now = datetime.now(UTC)

        def frame() -> pd.DataFrame:
            return tickets_frame([ticket()], column)

        def predicted(models: dict[str, Any]) -> Any:
            return predict_frame(
                models,
                frame(),
                subject_column="subject",
                body_column="body",
                max_text_chars=params.data.max_text_chars,
            )

        def head_only() -> Any:
            text = model_texts([tickets[next(turn) % len(tickets)]], params.data.max_text_chars)
            return predict_proba(runtime.models["urgency"], text)

        steps["urgency head only"] = median_ms(head_only, 100)
        steps["three heads"] = median_ms(lambda: predicted(heads), 100)
        if SIGNALS_MODEL in runtime.models:
            steps["+ text signals (MiniLM)"] = median_ms(lambda: predicted(runtime.models), 100)
        steps["+ rules"] = median_ms(lambda: score_tickets(runtime, [ticket()], now=now, surge=False), 100)
        steps["whole call (+ similar, duplicates, clusters, articles, store write)"] = median_ms(
            lambda: score_and_store(service, runtime, service.store, [ticket()]), 100
        )
    return steps


# ---------------------------------------------------------------------------------------------
# Report


def pairs(values: list[str], what: str) -> dict[str, str]:
    found = {}
    for value in values:
        name, _, target = value.partition("=")
        if not name or not target:
            raise SystemExit(f"{what} {value!r}: expected NAME=VALUE")
        found[name] = target
    return found


def table(runs: list[Run]) -> list[str]:
    lines = [
        f"{'server':<26} {'endpoint':<16} {'tickets/req':>11} {'users':>5} {'requests':>8} "
        f"{'fail':>4} {'req/s':>7} {'tickets/s':>9} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
    ]
    for run in runs:
        lines.append(
            f"{run.server:<26} {run.endpoint:<16} {run.batch:>11} {run.users:>5} {run.requests:>8} "
            f"{run.failures:>4} {run.requests_per_s:>7.1f} {run.tickets_per_s:>9.1f} "
            f"{run.p50:>7.0f} {run.p95:>7.0f} {run.p99:>7.0f}"
        )
    return lines


def plan(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(tickets per request, users) of each load run."""
    return [(1, count) for count in args.users] + [(size, args.batch_users) for size in args.batch_sizes]


def bench_ours(
    family: str, source: str, tickets: list[dict[str, Any]], args: argparse.Namespace, folder: Path
) -> tuple[list[Run], float, str]:
    """Load runs against `urgency serve`; its runs, peak RSS (MB) and the stored-row check."""
    name = f"urgency serve ({family})"
    port = free_port()
    database = folder / f"{family}.db"
    command = [str(BIN / "urgency"), "serve", "--params", str(args.params), "--port", str(port)]
    command += ["--database-url", f"sqlite:///{database}"]
    command += (
        ["--workers", str(args.workers)] if args.workers else []
    )  # default: one per two cores (serve.launch)
    if source != "registry":
        command += ["--model-dir", source]
    runs, answered, in_flight = [], 0, 0
    with running(name, command, "/health/ready", port, folder / f"{family}.log") as server:
        for batch, users in plan(args):
            endpoint = "/v1/score" if batch == 1 else "/v1/score/batch"
            bodies = our_bodies(tickets, batch)
            run = load_run(
                server,
                endpoint,
                bodies,
                batch,
                users=users,
                seconds=args.seconds,
                api_key=API_KEY,
                folder=folder,
                load=args.load,
            )
            print(table([run])[1], flush=True)
            runs.append(run)
            answered += (WARM_UP + run.requests - run.failures) * batch
            # wrk stops with up to `users` requests in flight, which the server still stores.
            in_flight += users * batch if args.load == "wrk" else 0
    rows = stored_rows(database)
    check = f"{name}: {rows} rows stored for {answered} tickets answered" + (
        f" (+ up to {in_flight} in flight when the load stopped)" if in_flight else ""
    )
    if not answered <= rows <= answered + in_flight:
        check += "  <-- MISMATCH"
    return runs, server.rss.peak / 2**20, check


def bench_mlflow(
    family: str, uri: str, texts: list[str], args: argparse.Namespace, folder: Path, tracking_uri: str
) -> tuple[list[Run], float]:
    """The same load runs against `mlflow models serve` (`--mlflow-workers`, default 1: its own)."""
    name = f"mlflow serve ({family})"
    port = free_port()
    command = [str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port), "-w", str(args.mlflow_workers)]
    # mlflow starts `uvicorn` from PATH: this environment's.
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": tracking_uri, "HF_HUB_OFFLINE": "1"}
    runs = []
    with running(name, command, "/ping", port, folder / f"mlflow-{family}.log", env) as server:
        for batch, users in plan(args):
            bodies = mlflow_bodies(texts, batch)
            run = load_run(
                server,
                "/invocations",
                bodies,
                batch,
                users=users,
                seconds=args.seconds,
                api_key=None,
                folder=folder,
                load=args.load,
            )
            print(table([run])[1], flush=True)
            runs.append(run)
    return runs, server.rss.peak / 2**20


def ratios(runs: list[Run], families: list[str], users: list[int]) -> list[str]:
    found = {(run.server, run.batch, run.users): run for run in runs}
    lines = []
    for family in families:
        for count in users:
            ours = found.get((f"urgency serve ({family})", 1, count))
            theirs = found.get((f"mlflow serve ({family})", 1, count))
            if ours and theirs:
                throughput = ours.requests_per_s / theirs.requests_per_s
                lines.append(
                    f"  {family}, {count} user(s): throughput {throughput:.2f}x, "
                    f"p50 latency {ours.p50 / theirs.p50:.2f}x"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument(
        "--model-dir",
        action="append",
        default=[],
        metavar="FAMILY=DIR|registry",
        help="A model family for `urgency serve` (repeat); default: baseline=registry.",
    )
    parser.add_argument(
        "--mlflow-model",
        action="append",
        default=[],
        metavar="FAMILY=URI",
        help="The urgency model `mlflow models serve` serves for a family (repeat); "
        "default: baseline=models:/<prefix>-urgency@<champion alias> of the params' registry.",
    )
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4], help="Single-ticket runs' users.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[20, 100])
    # Few: one batch of 100 takes the transformer heads seconds.
    parser.add_argument("--batch-users", type=int, default=2, help="Batch runs' users.")
    parser.add_argument("--seconds", type=int, default=20, help="Length of each load run.")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="`urgency serve` worker processes (default: its own, one per two cores).",
    )
    parser.add_argument(
        "--mlflow-workers", type=int, default=1, help="`mlflow models serve -w` (its default: 1)."
    )
    parser.add_argument(
        "--texts", type=Path, default=ROOT.parent / "shared/data/support_tickets_synthetic.csv"
    )
    parser.add_argument("--demo", type=Path, default=ROOT / "data/demo_tickets.csv")
    parser.add_argument(
        "--load",
        choices=["wrk", "locust"],
        default="wrk" if shutil.which("wrk") else "locust",
        help="The load generator (default: wrk when on PATH).",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/serve.txt")
    args = parser.parse_args()

    from urgency.config import load_params

    params = load_params(args.params)
    families = pairs(args.model_dir, "--model-dir") or {"baseline": "registry"}
    champion = f"models:/{params.mlflow.model_name('urgency')}@{params.mlflow.champion_alias}"
    mlflow_models = pairs(args.mlflow_model, "--mlflow-model") or {"baseline": champion}
    tickets = sample_tickets(args.texts, args.demo, max(1000, 50 * max(args.batch_sizes)))
    texts = model_texts(tickets, params.data.max_text_chars)
    # SIGTERM stops the servers too (the `finally` blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from serve.launch import default_workers

    load_before = os.getloadavg()[0]  # other work on the machine skews every figure
    runs: list[Run] = []
    peaks: dict[str, float] = {}
    checks: list[str] = []
    breakdowns: dict[str, dict[str, float]] = {}
    print(table([])[0], flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = Path(tmp)
        for family, source in families.items():
            family_runs, peaks[f"urgency serve ({family})"], check = bench_ours(
                family, source, tickets, args, folder
            )
            runs += family_runs
            checks.append(check)
            model_dir = None if source == "registry" else Path(source)
            breakdowns[family] = in_process(args.params, model_dir, tickets, folder)
        for family, uri in mlflow_models.items():
            family_runs, peaks[f"mlflow serve ({family})"] = bench_mlflow(
                family, uri, texts, args, folder, params.mlflow.tracking_uri
            )
            runs += family_runs

    lines = [
        f"{len(tickets)} tickets ({args.texts.name} texts, {args.demo.name} metadata); "
        f"{args.seconds} s per run; {args.load}, no wait; "
        f"urgency serve --workers {args.workers or f'default: {default_workers()}'}; "
        f"mlflow models serve -w {args.mlflow_workers}; "
        f"{os.cpu_count()} CPUs, load average {load_before:.1f} at the start",
        "",
        *table(runs),
        "",
        "peak RSS of the server process tree (MB):",
        *(f"  {name:<26} {peak:>6.0f}" for name, peak in peaks.items()),
        "",
        "database check:",
        *(f"  {check}" for check in checks),
        "",
        "ours /v1/score vs mlflow /invocations, one ticket per request (ours: three heads, the MiniLM "
        "text signals, rules, similar tickets, duplicates, clusters, articles and a database write; "
        "mlflow: the urgency head only):",
        *ratios(runs, list(families), args.users),
        "",
        "in process, one ticket per call, median ms (no HTTP; each step adds a stage to the one above):",
        *(
            f"  {family:<10} {step:<70} {ms:6.1f}"
            for family, steps in breakdowns.items()
            for step, ms in steps.items()
        ),
    ]
    print("\n" + "\n".join(lines))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

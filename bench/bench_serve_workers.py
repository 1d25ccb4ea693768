"""`urgency serve --workers N` side by side: which number of worker processes serves best here.

Every `--workers` value gets its own server (the params' registry champions, a temporary SQLite
store each), all started before the first load run and left idle between their runs; then the
load runs alternate between the servers for `--rounds` rounds (each round: every `--users` value
against every server in turn), so a change in the machine's speed falls on all of them alike.
One ticket per request on POST /v1/score, the same tickets, the load generator and run shape of
bench/bench_serve.py (wrk when on PATH). Printed: one line per load run, then per server the
median over the rounds and its peak RSS. Run from the project folder, under the benchmark lock:

    .venv/bin/python bench/bench_serve_workers.py [--workers 1 2] [--users 1 16] [--rounds 3] [--seconds 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

# This folder is on sys.path when run as a script: the sibling benchmark's helpers.
from bench_serve import (
    API_KEY,
    BIN,
    ROOT,
    free_port,
    load_run,
    our_bodies,
    running,
    sample_tickets,
    table,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument(
        "--texts", type=Path, default=ROOT.parent / "shared/data/support_tickets_synthetic.csv"
    )
    parser.add_argument("--demo", type=Path, default=ROOT / "data/demo_tickets.csv")
    parser.add_argument(
        "--load", choices=["wrk", "locust"], default="wrk" if shutil.which("wrk") else "locust"
    )
    args = parser.parse_args()

    bodies = our_bodies(sample_tickets(args.texts, args.demo, 2000), 1)
    runs: dict[int, list] = {count: [] for count in args.workers}
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp, ExitStack() as servers:
        folder = Path(tmp)
        started = {}
        for count in args.workers:
            port = free_port()
            command = [str(BIN / "urgency"), "serve", "--params", str(args.params), "--port", str(port)]
            command += [
                "--database-url",
                f"sqlite:///{folder / f'workers-{count}.db'}",
                "--workers",
                str(count),
            ]
            name = f"urgency serve --workers {count}"
            started[count] = servers.enter_context(
                running(name, command, "/health/ready", port, folder / f"workers-{count}.log")
            )
        print(table([])[0], flush=True)
        for _ in range(args.rounds):
            for users in args.users:
                for count, server in started.items():
                    run = load_run(
                        server,
                        "/v1/score",
                        bodies,
                        1,
                        users=users,
                        seconds=args.seconds,
                        api_key=API_KEY,
                        folder=folder,
                        load=args.load,
                    )
                    runs[count].append(run)
                    print(table([run])[1], flush=True)
        peaks = {count: server.rss.peak / 2**20 for count, server in started.items()}

    print(
        f"\nmedian of {args.rounds} rounds ({args.load}, {args.seconds} s per run, one ticket per request):"
    )
    for count in args.workers:
        for users in args.users:
            mine = [run for run in runs[count] if run.users == users]
            print(
                f"  --workers {count}, {users:>2} connection(s): "
                f"{statistics.median(run.requests_per_s for run in mine):6.1f} requests/s "
                f"(runs {' / '.join(f'{run.requests_per_s:.1f}' for run in mine)}), "
                f"p50 {statistics.median(run.p50 for run in mine):5.0f} ms "
                f"(runs {' / '.join(f'{run.p50:.0f}' for run in mine)})"
            )
        print(f"  --workers {count}: peak RSS {peaks[count]:.0f} MB")


if __name__ == "__main__":
    main()

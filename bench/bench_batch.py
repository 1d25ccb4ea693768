"""Batch scoring side by side with its anchor: `urgency predict` vs the afternoon script.

Both run as whole processes on the same N-ticket file (support and Jira tickets, subject and
body), alternately, `--repeats` times; the medians of wall seconds, CPU seconds (user + system
of the process and its children) and peak RSS are printed with their ratio. `urgency predict`
uses the exported champions of the three heads (`make demo` writes them to models/); the
afternoon script's models are trained first (`bench/afternoon_script.py train`), outside the
timing.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_batch.py [--rows 20000] [--model-dir models]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
# Run a command in a child and report its wall time, CPU time and peak RSS (of that child only).
MEASURE = (
    "import json, resource, subprocess, sys, time; started = time.perf_counter();"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN);"
    "print(json.dumps({'wall': time.perf_counter() - started, 'cpu': usage.ru_utime + usage.ru_stime,"
    " 'rss_mb': usage.ru_maxrss / 1024}))"
)


def make_tickets(data: Path, rows: int, path: Path) -> float:
    """N support and Jira tickets (sampled with a fixed seed); returns their mean length."""
    support = pd.read_csv(data / "support_tickets_synthetic.csv")[["subject", "body"]]
    jira = pd.read_csv(data / "jira_issues_priority.csv")[["summary", "description"]]
    jira.columns = ["subject", "body"]
    tickets = pd.concat([support, jira], ignore_index=True)
    sample = tickets.sample(n=rows, replace=rows > len(tickets), random_state=0).reset_index(drop=True)
    sample.insert(0, "id", range(rows))
    sample.to_csv(path, index=False)
    return float((sample["subject"].fillna("").str.len() + sample["body"].fillna("").str.len()).mean())


def measure(command: list[str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--model-dir", default="models")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=None, help="urgency predict --jobs (default: its own)")
    args = parser.parse_args()
    urgency = str(Path(sys.executable).parent / "urgency")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        tickets = root / "tickets.csv"
        mean_chars = make_tickets(args.data, args.rows, tickets)
        script = str(HERE / "afternoon_script.py")
        subprocess.run(
            [sys.executable, script, "train", "--data", str(args.data), "--out", str(root / "m")], check=True
        )
        # The three heads the afternoon script has (the text signals' model, when exported, is
        # a fourth model the script has no counterpart of: left out here).
        heads = root / "heads"
        heads.mkdir()
        for head in ("urgency", "category", "sentiment"):
            # Copied: MLflow refuses a model folder reached through a symlink.
            shutil.copytree(Path(args.model_dir) / head, heads / head)
        ours = [
            urgency,
            "predict",
            "--model-dir",
            str(heads),
            "-i",
            str(tickets),
            "-o",
            str(root / "u.csv"),
        ]
        if args.jobs:
            ours += ["--jobs", str(args.jobs)]
        anchor = [
            sys.executable,
            script,
            "predict",
            "--models",
            str(root / "m"),
            "-i",
            str(tickets),
            "-o",
            str(root / "a.csv"),
        ]
        runs: dict[str, list[dict[str, float]]] = {"urgency predict": [], "afternoon script": []}
        for _ in range(args.repeats):
            runs["urgency predict"].append(measure(ours))
            runs["afternoon script"].append(measure(anchor))
    print(
        f"{args.rows:,} tickets, mean {mean_chars:.0f} characters, "
        f"medians of {args.repeats} (whole processes)"
    )
    print(f"{'':18} {'wall s':>8} {'tickets/s':>10} {'CPU s':>7} {'tickets/CPU-s':>14} {'peak RSS MB':>12}")
    medians = {}
    for name, results in runs.items():
        wall = statistics.median(r["wall"] for r in results)
        cpu = statistics.median(r["cpu"] for r in results)
        rss = statistics.median(r["rss_mb"] for r in results)
        medians[name] = (args.rows / wall, args.rows / cpu)
        print(
            f"{name:18} {wall:8.1f} {args.rows / wall:10,.0f} {cpu:7.1f} "
            f"{args.rows / cpu:14,.0f} {rss:12,.0f}"
        )
    ours_rate, ours_cpu = medians["urgency predict"]
    anchor_rate, anchor_cpu = medians["afternoon script"]
    print(
        f"ratio (urgency / afternoon): {ours_rate / anchor_rate:.2f}x tickets/s, "
        f"{ours_cpu / anchor_cpu:.2f}x per CPU-second"
    )


if __name__ == "__main__":
    main()

"""docs/own-helpdesk.md, run as written: every command of the guide, on a small Zendesk-like
export made here (HTML bodies, empty titles, urgent/high/normal/low, groups, plan, no language,
no sentiment labels), through the installed `urgency` console script and a real server.

The commands are read from the guide's `console` blocks (lines starting with `$ `), so the guide
and this test cannot drift apart. The one substitution: the guide's export is made from the
shared synthetic tickets; here from a small CSV in their layout, written by the test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.postgres import free_port

PROJECT = Path(__file__).resolve().parents[1]
GUIDE = PROJECT / "docs" / "own-helpdesk.md"
SHARED_TICKETS = "../shared/data/support_tickets_synthetic.csv"

GROUP_WORDS = {
    "Technical Support": "software crash error installation update",
    "Product Support": "product feature configuration manual settings",
    "Customer Service": "account contact change address request",
    "IT Support": "laptop network vpn printer workstation",
    "Billing and Payments": "invoice payment charge refund billing",
    "Returns and Exchanges": "return exchange parcel damaged shipment",
    "Service Outages and Maintenance": "outage downtime maintenance unavailable servers",
    "Sales and Pre-Sales": "quote pricing demo licence purchase",
    "Human Resources": "payroll holiday contract onboarding employee",
    "General Inquiry": "question information hours general inquiry",
}
PRIORITY_WORDS = {
    "high": "urgent critical blocked immediately everything stopped",
    "medium": "soon affecting some work please help",
    "low": "whenever convenient minor small question",
}


def guide_commands(text: str) -> list[str]:
    """The `$ ` lines of the guide's console blocks, with `\\` continuations joined."""
    commands: list[str] = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        pending = ""
        for line in block.splitlines():
            if pending:
                pending += " " + line.strip()
            elif line.startswith("$ "):
                pending = line[2:].strip()
            else:
                continue
            if pending.endswith("\\"):
                pending = pending[:-1].rstrip()
                continue
            commands.append(pending)
            pending = ""
    return commands


def small_shared_tickets(path: Path, per_cell: int = 5) -> None:
    """Tickets in the layout of support_tickets_synthetic.csv: every group x priority, some in
    German, bodies with line breaks written as `\\n` (as that file has them)."""
    rng = np.random.default_rng(7)
    rows = []
    for group, words in GROUP_WORDS.items():
        for priority, urgency_words in PRIORITY_WORDS.items():
            for number in range(per_cell):
                picked = " ".join(rng.permutation(words.split()))
                if number == 0:  # a German ticket in every cell
                    body = f"Hallo,\\n\\nwir haben ein Problem mit {picked}. Bitte helfen Sie uns schnell."
                else:
                    body = (
                        f"Hello team,\\n\\nwe have an issue: {picked} {urgency_words}.\\nThank you & regards"
                    )
                rows.append(
                    {
                        "subject": f"{words.split()[0]} {urgency_words.split()[0]}",
                        "body": body,
                        "type": "Incident" if number % 2 else "Request",
                        "queue": group,
                        "priority": priority,
                        "language": "de" if number == 0 else "en",
                    }
                )
    pd.DataFrame(rows).sample(frac=1.0, random_state=3).to_csv(path, index=False)


def _run(command: str, folder: Path, environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
    arguments = shlex.split(command)
    if arguments[0] == "urgency":
        arguments[0] = str(Path(sys.executable).parent / "urgency")
    elif arguments[0] == "python":
        arguments[0] = sys.executable
    return subprocess.run(arguments, cwd=folder, env=environment, capture_output=True, text=True, timeout=600)


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype("string").fillna("")


@pytest.mark.slow
def test_the_own_helpdesk_guide_runs_as_written(tmp_path: Path) -> None:
    commands = guide_commands(GUIDE.read_text(encoding="utf-8"))
    assert commands, "the guide has no console commands"
    shutil.copytree(PROJECT / "examples" / "zendesk", tmp_path / "examples" / "zendesk")
    small_shared_tickets(tmp_path / "shared_tickets.csv")
    port = free_port()
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "URGENCY_MODE": "local"}
    environment.pop("URGENCY_DATABASE_URL", None)
    environment.pop("URGENCY_PARAMS", None)
    server: subprocess.Popen[str] | None = None
    answers: dict[str, str] = {}
    try:
        for command in commands:
            command = command.replace(SHARED_TICKETS, "shared_tickets.csv").replace(":8010", f":{port}")
            if command.startswith("urgency serve"):
                command = command.replace("--port 8010", f"--port {port}")
                arguments = shlex.split(command)
                arguments[0] = str(Path(sys.executable).parent / "urgency")
                server = subprocess.Popen(
                    arguments,
                    cwd=tmp_path,
                    env=environment,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                _wait_ready(port, server)
                continue
            done = _run(command, tmp_path, environment)
            assert done.returncode == 0, (
                f"`{command}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
            answers[command.split()[0] + " " + command.split()[1]] = done.stdout
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)

    data = tmp_path / "data" / "zendesk"
    new = _as_text(pd.read_json(data / "new.jsonl", lines=True, dtype=False))
    # predict and score keep every input column, unchanged and in order, and add the heads trained.
    for name in ("predicted.csv", "queue.csv"):
        output = pd.read_csv(data / name, dtype=str, keep_default_na=False)
        assert list(output.columns[: len(new.columns)]) == list(new.columns), name
        kept = output.set_index("ticket_id").loc[new["ticket_id"], list(new.columns.drop("ticket_id"))]
        pd.testing.assert_frame_equal(
            kept.reset_index(drop=True),
            new.drop(columns="ticket_id").reset_index(drop=True),
            check_dtype=False,
        )
        added = [column for column in output.columns if column not in new.columns]
        assert not [column for column in added if "sentiment" in column], name
        assert any(column.endswith("urgency") for column in added) and any(
            column.endswith("category") for column in added
        ), name
    queue = pd.read_csv(data / "queue.csv", dtype=str, keep_default_na=False)
    assert set(queue["priority"]) <= {"urgent", "high", "normal", "low"}  # the agents' own column
    assert set(queue["model_priority"]) <= {"P1", "P2", "P3", "P4"}

    curl = next(value for key, value in answers.items() if key.startswith("curl"))
    answer = json.loads(curl)
    assert answer["urgency"] in {"high", "medium", "low"} and answer["category"] in GROUP_WORDS
    assert answer["sentiment"] is None and set(answer["model_versions"]) == {"urgency", "category"}
    evaluation = json.loads((data / "evaluation.json").read_text())
    assert set(evaluation) == {"urgency", "category"}
    assert (data / "report.html").stat().st_size > 0
    assert sorted(path.name for path in (data / "models").iterdir() if path.is_dir()) == [
        "category",
        "urgency",
    ]


def _wait_ready(port: int, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stdout.read() if server.stdout else ""
            raise AssertionError(f"the service exited {server.returncode}:\n{output}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("the service did not get ready in 120 s")

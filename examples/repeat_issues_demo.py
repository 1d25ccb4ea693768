"""Repeat issues on the demo (`make demo`; docs/repeat-issues.md): the real service, as a helpdesk
would call it.

Starts `urgency serve` (the demo's champions, rules.yaml: `knowledge_base`, `clusters`,
`similar_tickets`, `duplicates`) on a free loopback port with a store of its own, sends the demo
tickets (each from a customer), then some of the same customers asking again in other words and
another customer with the same problem. Prints what the service answered - the probable
duplicates (and the priority the `probable-duplicate` rule lowered), the similar tickets, the
articles, the clusters - and writes it all to `--output` (JSON).

    python examples/repeat_issues_demo.py --params params.yaml --output data/repeat_issues_demo.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

KEY = os.environ.get("URGENCY_API_KEY", "local-dev-key")
HEADERS = {"X-API-Key": KEY}
FIELDS = ("channel", "plan", "vip", "region", "language", "users_affected", "service_down")
FIELDS += ("request_type", "account_type", "customer_category", "persona", "custom_regulated")
# Customers asking again, in other words (the ticket they asked first, what they write now), and
# another customer with the first one's problem (similar, not a duplicate: not the same requester).
AGAIN = [
    ("T-1003", "Still cannot log in to the portal",
     "Since the password reset this morning I still cannot log in, the portal says my account is "
     "locked. I need access today to approve the orders."),
    ("T-1008", "Write access to the finance drive",
     "Please give me write access to the finance shared drive, I need to upload the quarterly "
     "report there."),
    ("T-1011", "Suspicious logins again",
     "We still see logins to our admin accounts from unknown IP addresses and suspect a breach. "
     "Please help us lock the accounts down."),
]  # fmt: skip
OTHER = ("T-1003", "Portal login not working",
         "I cannot log in to the portal, my password is refused even after a reset.")  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def requester(ticket_id: str) -> str:
    return f"customer-{ticket_id.lower()}@example.com"


def demo_tickets(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    return [
        {
            "ticket_id": row["ticket_id"],
            "subject": row["subject"] or None,
            "body": row["body"] or " ",
            "created_at": row["created_at"],
            "fields": {
                **{name: row[name] for name in FIELDS if row.get(name)},
                "requester": requester(row["ticket_id"]),
                "organization": f"org-{row['ticket_id'].lower()}",
            },
        }
        for row in rows
    ]


def serve(params: Path, database: Path, log: Any) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "urgency"),
        "serve",
        "--params",
        str(params),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--database-url",
        f"sqlite:///{database}",
    ]
    process = subprocess.Popen(command, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            raise SystemExit(f"urgency serve exited with {process.returncode}; its log: {log.name}")
        try:
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"urgency serve did not become ready in 300 s; its log: {log.name}")
        time.sleep(0.5)


def score(base: str, ticket: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{base}/v1/score", json=ticket, headers=HEADERS, timeout=120)
    if answer.status_code != 200:
        raise SystemExit(f"/v1/score answered {answer.status_code} for {ticket['ticket_id']}: {answer.text}")
    return answer.json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--tickets", type=Path, default=Path("data/demo_tickets.csv"))
    parser.add_argument("--output", type=Path, default=Path("data/repeat_issues_demo.json"))
    options = parser.parse_args()
    tickets = demo_tickets(options.tickets)
    by_id = {ticket["ticket_id"]: ticket for ticket in tickets}
    with tempfile.TemporaryDirectory() as folder, open(Path(folder) / "serve.log", "w+b") as log:
        process, base = serve(options.params, Path(folder) / "repeat.db", log)
        try:
            first = {ticket["ticket_id"]: score(base, ticket) for ticket in tickets}
            later = []
            for number, (original, subject, body) in enumerate(AGAIN, 1):
                asked = by_id[original]
                again = {**asked, "ticket_id": f"{original}-again", "subject": subject, "body": body}
                # An hour (and a minute per repeat) after the first time they asked.
                when = datetime.fromisoformat(asked["created_at"]) + timedelta(hours=1, minutes=number)
                again["created_at"] = when.isoformat()
                later.append((original, score(base, again)))
            original, subject, body = OTHER
            other_ticket = {**by_id[original], "ticket_id": "T-2001", "subject": subject, "body": body}
            other_ticket["fields"] = {**other_ticket["fields"], "requester": "someone-else@example.com"}
            other_ticket["fields"]["organization"] = "org-someone-else"
            other = score(base, other_ticket)
            clusters = httpx.get(f"{base}/v1/clusters", headers=HEADERS, timeout=60).json()
        finally:
            process.terminate()
            process.wait(timeout=30)
    print("Customers asking again (rules.yaml `duplicates`, rule `probable-duplicate`):")
    for original, answer in later:
        duplicate = answer["duplicate_of"]
        found = duplicate["explanation"] if duplicate else "no duplicate found"
        print(
            f"  {answer['ticket_id']}: {found}; priority {answer['priority']} "
            f"(the original {original}: {first[original]['priority']})"
        )
        for similar in answer["similar_tickets"][:3]:
            print(f"      similar: {similar['ticket_id']} ({similar['similarity']:.2f}, {similar['status']})")
        for article in answer["articles"][:1]:
            print(f"      article: {article['title']} ({article['why']})")
    duplicate = other["duplicate_of"]
    print(
        f"  {other['ticket_id']} (another customer): "
        f"{duplicate['explanation'] if duplicate else 'not a duplicate'}; similar: "
        + ", ".join(f"{s['ticket_id']} ({s['similarity']:.2f})" for s in other["similar_tickets"][:3])
    )
    print(
        f"Clusters: {clusters['tickets']} tickets in {len(clusters['clusters'])} listed clusters, "
        f"{len(clusters['alerts'])} alert(s)"
    )
    flagged = sum(answer["duplicate_of"] is not None for _, answer in later)
    print(f"{flagged} of {len(later)} repeats flagged; the other customer's: {duplicate is not None}")
    options.output.parent.mkdir(parents=True, exist_ok=True)
    report = {"first": first, "again": [answer for _, answer in later], "other": other, "clusters": clusters}
    options.output.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"wrote {options.output}")


if __name__ == "__main__":
    main()

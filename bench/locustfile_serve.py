"""Locust load for bench/bench_serve.py: each user posts prepared request bodies in a loop.

bench_serve.py writes the bodies (one JSON document per line) and starts locust headless with:

    URGENCY_BENCH_BODIES  file with one request body per line, posted in turn (round robin)
    URGENCY_BENCH_PATH    the endpoint, e.g. /v1/score, /v1/score/batch or /invocations
    URGENCY_BENCH_API_KEY sent as X-API-Key (empty: no key header, for mlflow's server)

The bodies are encoded up front, so locust spends its share of the CPU on HTTP, not on JSON.
There is no wait between requests: the figures are what the server does at full load with as
many requests in flight as there are users.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from locust import FastHttpUser, task

BODIES = Path(os.environ["URGENCY_BENCH_BODIES"]).read_bytes().splitlines()
PATH = os.environ["URGENCY_BENCH_PATH"]
HEADERS = {"Content-Type": "application/json"}
STARTS = itertools.count()
if os.environ.get("URGENCY_BENCH_API_KEY"):
    HEADERS["X-API-Key"] = os.environ["URGENCY_BENCH_API_KEY"]


class Client(FastHttpUser):
    # Keep-alive connections, like a helpdesk's integration; one per user.
    def on_start(self) -> None:
        # Users start at different bodies, so concurrent requests carry different tickets.
        start = next(STARTS) * 97 % len(BODIES)
        self.bodies = itertools.cycle(BODIES[start:] + BODIES[:start])

    @task
    def post(self) -> None:
        with self.client.post(PATH, data=next(self.bodies), headers=HEADERS, catch_response=True) as reply:
            if reply.status_code != 200:
                reply.failure(f"HTTP {reply.status_code}: {(reply.text or '')[:200]}")

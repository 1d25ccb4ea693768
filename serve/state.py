"""The service's state: one typed object per app (`app.state.service`, see `serve.deps`).

The models a request is served with (`runtime`) are switched by replacing one reference, under a
lock so that two reloads never interleave. Readers take no lock: a request that already holds the
old runtime finishes on it, and no response ever mixes versions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from fastapi.concurrency import run_in_threadpool

from serve.middleware import Metrics
from serve.runtime import Runtime, load_runtime, registry_versions
from serve.schemas import ReloadResult, Ticket
from serve.settings import ApiKey, ServiceSettings
from urgency.agents import Agents, AgentsWatch
from urgency.config import load_params
from urgency.rules.engine import surge_active
from urgency.store import Store
from urgency.writeback import drain

log = logging.getLogger("urgency.serve")

# How long the store's count of tickets in the surge window is reused: counting on every request
# would be a query per request, and a surge is a matter of hours.
SURGE_COUNT_SECONDS = 30
# Seconds a helpdesk's API has to answer one write-back call.
WRITE_BACK_TIMEOUT = 10.0


@dataclass
class ServiceState:
    settings: ServiceSettings
    # Per app (its own Prometheus registry), so several apps can live in one process.
    metrics: Metrics = field(default_factory=Metrics)
    # Set by the lifespan (`serve.app`); None before it has run.
    runtime: Runtime | None = None
    store: Store | None = None
    api_keys: tuple[ApiKey, ...] = ()
    # (when counted, by time.monotonic(); the count): one tuple replaced in one assignment, so a
    # concurrent request never reads one count's time with another's number.
    surge_count: tuple[float, int] = (0.0, 0)
    _reload_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # The agents file (params `operations.agents`), read again when it changes on disk.
    agents_watch: AgentsWatch | None = None
    # One assignment round at a time in this process: each round reads the load the last wrote.
    assign_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -----------------------------------------------------------------------------------------
    # Models

    def load(self) -> Runtime:
        """A complete new runtime: the params read again, the models the alias points at now
        (on a reload: every head served now among them)."""
        params = load_params(self.settings.params)
        served = tuple(self.runtime.models) if self.runtime is not None else ()
        return load_runtime(
            params, model_dir=self.settings.model_dir, alias=self.settings.model_alias, keep_heads=served
        )

    def swap(self, new: Runtime) -> None:
        self.runtime = new  # one reference assignment: atomic for every reader
        self.metrics.show_versions(new.versions)
        log.info("serving models %s", new.versions)

    def reload(self) -> ReloadResult:
        """Load and switch to the models the alias points at now (UrgencyError: the old ones stay).
        This process only: other workers follow by their own alias check (`workers` says when)."""
        with self._reload_lock:
            before = self.runtime.versions if self.runtime is not None else {}
            new = self.load()
            self.swap(new)
            return ReloadResult(
                changed=before != new.versions,
                before=before,
                after=new.versions,
                pid=os.getpid(),
                workers=self.workers_note(),
            )

    def workers_note(self) -> str:
        """What a reload means for the other worker processes of the service, if any."""
        seconds = self.settings.check_seconds()
        if seconds > 0:
            return (
                f"this worker (pid {os.getpid()}) switched now; every other worker checks the alias "
                f"every {seconds:g} s and switches within that"
            )
        return (
            f"this worker (pid {os.getpid()}) switched now; other workers keep their models until "
            "they receive a reload (URGENCY_MODEL_CHECK_SECONDS is 0, or the models are a folder)"
        )

    async def watch_alias(self) -> None:
        """Reload when the registry alias points at other versions (the periodic check); runs
        until cancelled, and a failed check or reload keeps serving the models in use."""
        while True:
            await asyncio.sleep(self.settings.check_seconds())
            runtime_now = self.runtime
            if runtime_now is None:
                continue
            try:
                wanted = await run_in_threadpool(
                    registry_versions, runtime_now.params, self.settings.model_alias
                )
                if wanted and wanted != runtime_now.versions:
                    log.info("alias moved %s -> %s: reloading", runtime_now.versions, wanted)
                    await run_in_threadpool(self.reload)
            except Exception:
                log.exception("model check failed; serving on with %s", runtime_now.versions)

    # -----------------------------------------------------------------------------------------
    # Agents

    def agents(self, runtime: Runtime) -> tuple[Agents | None, AgentsWatch | None]:
        """The agents in use (None: no agents file configured, or none readable yet) and the
        watch that says whether the file on disk is broken. Cheap: a stat per call."""
        path = runtime.params.operations.agents
        if path is None:
            return None, None
        watch = self.agents_watch
        if watch is None or watch.path != path:
            watch = AgentsWatch(path)
            self.agents_watch = watch
        return watch.current(runtime.rules), watch

    # -----------------------------------------------------------------------------------------
    # Write-back

    async def send_write_backs(self) -> None:
        """Send the outbox's due write-backs every `outbox_seconds` (`urgency.writeback.drain`);
        runs until cancelled. Every worker process runs one: the store's claims keep them from
        sending the same write twice, and a failed round leaves the writes for the next."""
        credentials = {
            name: secret.get_secret_value() for name, secret in self.settings.helpdesk_credentials.items()
        }
        with httpx.Client(timeout=WRITE_BACK_TIMEOUT) as client:
            while True:
                await asyncio.sleep(self.settings.outbox_seconds)
                runtime_now, store = self.runtime, self.store
                if runtime_now is None or store is None:
                    continue
                api_urls = {
                    name: helpdesk.api_url
                    for name, helpdesk in runtime_now.params.helpdesks.items()
                    if helpdesk.api_url
                }
                try:
                    await run_in_threadpool(drain, store, client, api_urls, credentials, datetime.now(UTC))
                except Exception:
                    log.exception("write-back round failed; the writes stay in the outbox")

    # -----------------------------------------------------------------------------------------
    # Surge

    def surge(self, runtime: Runtime, store: Store, now: datetime, tickets: list[Ticket]) -> bool:
        """Surge (`urgency.rules.engine.surge_active`): these tickets plus those already stored,
        created in the window (the store's count cached `SURGE_COUNT_SECONDS`)."""
        spec = runtime.rules.spec.surge
        if spec.mode != "auto":
            return spec.mode == "on"
        checked, count = self.surge_count
        if time.monotonic() - checked > SURGE_COUNT_SECONDS:
            count = store.count_created_between(now - timedelta(hours=spec.window_hours), now)
            self.surge_count = (time.monotonic(), count)
        created = [ticket.created_at for ticket in tickets]
        return surge_active(runtime.rules, created, now, counted_before=count)

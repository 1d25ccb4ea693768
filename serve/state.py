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
from typing import Any

import httpx
from fastapi.concurrency import run_in_threadpool

from serve.coalesce import Coalescer
from serve.middleware import Metrics
from serve.runtime import Runtime, load_runtime, registry_versions
from serve.schemas import ReloadResult, Ticket
from serve.settings import ApiKey, ServiceSettings
from urgency.agents import Agents, AgentsWatch
from urgency.backlog import Queues, load_breach_model, queues, team_agents
from urgency.config import load_params
from urgency.rules.engine import surge_active
from urgency.store import Store
from urgency.writeback import drain

log = logging.getLogger("urgency.serve")

# How long the store's count of tickets in the surge window is reused: counting on every request
# would be a query per request, and a surge is a matter of hours.
SURGE_COUNT_SECONDS = 30
# How often a worker's similar-tickets index reads the vectors other workers stored.
SIMILAR_CATCH_UP_SECONDS = 5.0
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
    # (when read, by time.monotonic(); the open queues): the store's open tickets and recent
    # first-response times, re-read every `queue_seconds` (what the customer is told).
    queue_snapshot: tuple[float, Queues | None] = (0.0, None)
    queue_seconds: float = 30.0
    # (the runtime it was loaded for, the fitted breach model or None): loaded once per runtime.
    breach_snapshot: tuple[Runtime | None, object] = (None, None)
    _reload_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # The agents file (params `operations.agents`), read again when it changes on disk.
    agents_watch: AgentsWatch | None = None
    # One assignment round at a time in this process: each round reads the load the last wrote.
    assign_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _agents_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Repeat-issue clusters of the tickets this worker scored: (the rules' `clusters` section it
    # was made for, the `urgency.clusters.ClusterTracker`), made again when the section changes.
    cluster_snapshot: tuple[object, object] = (None, None)
    # (when checked, by time.monotonic(); whether an alert was active): `clusters.surge`.
    cluster_alerting: tuple[float, bool] = (0.0, False)
    _cluster_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Similar tickets and duplicates: (the vector scope it holds, where it is saved or None, the
    # `urgency.similar.SimilarIndex`), opened on first use; (when last caught up with the store).
    similar_snapshot: tuple[str | None, object, object] = (None, None, None)
    similar_synced: float = 0.0
    _similar_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Concurrent POST /v1/score requests scored in one call (`routes.scoring.one_ticket_scoring`,
    # set by the lifespan).
    one_ticket: Coalescer[Ticket, Any] | None = None

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
            with self._agents_lock:  # one watch, however many requests arrive first at once
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
        url, secret = self.settings.alert_webhook_url, self.settings.alert_webhook_secret
        alert_webhook = (url, secret.get_secret_value() if secret else None) if url else None
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
                incident_fields = {
                    name: helpdesk.incident_fields
                    for name, helpdesk in runtime_now.params.helpdesks.items()
                    if helpdesk.incident_fields
                }
                try:
                    await run_in_threadpool(
                        drain,
                        store,
                        client,
                        api_urls,
                        credentials,
                        datetime.now(UTC),
                        incident_fields=incident_fields,
                        alert_webhook=alert_webhook,
                    )
                except Exception:
                    log.exception("write-back round failed; the writes stay in the outbox")

    # -----------------------------------------------------------------------------------------
    # Surge

    def surge(self, runtime: Runtime, store: Store, now: datetime, tickets: list[Ticket]) -> bool:
        """Surge (`urgency.rules.engine.surge_active`): these tickets plus those already stored,
        created in the window (the store's count cached `SURGE_COUNT_SECONDS`)."""
        if self.cluster_surge(runtime, now):
            return True
        spec = runtime.rules.spec.surge
        if spec.mode != "auto":
            return spec.mode == "on"
        checked, count = self.surge_count
        if time.monotonic() - checked > SURGE_COUNT_SECONDS:
            count = store.count_created_between(now - timedelta(hours=spec.window_hours), now)
            self.surge_count = (time.monotonic(), count)
        created = [ticket.created_at for ticket in tickets]
        return surge_active(runtime.rules, created, now, counted_before=count)

    # -----------------------------------------------------------------------------------------
    # Repeat-issue clusters (docs/repeat-issues.md "In the service")

    def tracker(self, runtime: Runtime) -> Any:
        """This worker's `ClusterTracker` for the runtime's rules (None: no `clusters` section).
        Made on first use, and again when the section changes, refilled from the store's tickets
        created in the last window (their text embedded again: `refill_clusters`)."""
        spec = runtime.rules.spec.clusters
        if spec is None:
            return None
        made_for, tracker = self.cluster_snapshot
        if tracker is not None and made_for == spec:
            return tracker
        with self._cluster_lock:
            made_for, tracker = self.cluster_snapshot
            if tracker is None or made_for != spec:
                from serve.repeat import tracker_for

                tracker = tracker_for(spec)
                self.refill_clusters(runtime, tracker, datetime.now(UTC))
                self.cluster_snapshot = (spec, tracker)
                self.cluster_alerting = (0.0, False)
        return tracker

    def refill_clusters(self, runtime: Runtime, tracker: Any, now: datetime) -> int:
        """Feed `tracker` the store's tickets created in its window before `now`, oldest first
        (after a restart the tracker is empty). Returns how many."""
        from serve.runtime import model_texts

        if self.store is None or runtime.vectors is None:
            return 0
        stored = self.store.tickets_created_between(now - tracker.window, now)
        if not stored:
            return 0
        vectors = runtime.vectors
        texts = vectors.texts(
            model_texts(runtime, [t["subject"] for t in stored], [t["body"] for t in stored])
        )
        kept = [(ticket, text) for ticket, text in zip(stored, texts, strict=True) if text.strip()]
        if not kept:
            return 0
        embedded = vectors.vectors([text for _, text in kept])
        for (ticket, text), vector in zip(kept, embedded, strict=True):
            tracker.add(ticket["ticket_id"], vector, _utc(ticket["created_at"]), text)
        log.info("clusters refilled with %d stored tickets of the last %s", len(kept), tracker.window)
        return len(kept)

    def cluster_alerted(self, alert: Any = None, runtime: Runtime | None = None) -> None:
        """A scored ticket just made its cluster burst: surge (`clusters.surge`) from now on,
        without waiting for the next check; the alert (`urgency.clusters.ClusterAlert`) stored
        as an episode (`record_cluster_alert`), its parent incident queued for a helpdesk."""
        self.cluster_alerting = (time.monotonic(), True)
        if alert is not None and runtime is not None:
            self.record_cluster_alert(runtime, alert)

    def record_cluster_alert(self, runtime: Runtime, alert: Any) -> dict[str, Any] | None:
        """Store a worker's cluster alert (`Store.record_cluster_alert`: one row per episode
        across the workers); a failure is logged, never the scoring request's (the alert is in
        this worker's tracker and `GET /v1/clusters` still)."""
        spec, store = runtime.rules.spec.clusters, self.store
        if spec is None or store is None:
            return None
        tracker = self.tracker(runtime)
        write_back_to = [
            name
            for name, helpdesk in runtime.params.helpdesks.items()
            if helpdesk.api_url and name in self.settings.helpdesk_credentials
        ]
        try:
            stored = store.record_cluster_alert(
                cluster_alert_row(alert, tracker.centroid(alert.cluster_id)),
                span=timedelta(minutes=spec.burst),
                threshold=spec.threshold,
                now=datetime.now(UTC),
                write_back_to=write_back_to,
                notify=bool(self.settings.alert_webhook_url),
            )
        except Exception:
            log.exception("storing the cluster alert %r failed", alert.title)
            return None
        log.info(
            "cluster alert %r: episode %s (%s)%s",
            alert.title,
            stored["id"],
            "new" if stored["new"] else "merged",
            f", parent incident queued for {stored['queued']}" if stored["queued"] else "",
        )
        return stored

    def cluster_surge(self, runtime: Runtime, now: datetime) -> bool:
        """`clusters.surge`: surge mode on while a cluster alert is active (checked at most every
        `SURGE_COUNT_SECONDS`: it visits every cluster)."""
        spec = runtime.rules.spec.clusters
        if spec is None or not spec.surge:
            return False
        checked, alerting = self.cluster_alerting
        if time.monotonic() - checked > SURGE_COUNT_SECONDS:
            tracker = self.tracker(runtime)
            # The tracker's clock is its tickets' created times.
            alerting = bool(tracker.alerts(tracker.latest or now)) if len(tracker) else False
            self.cluster_alerting = (time.monotonic(), alerting)
        return alerting

    # -----------------------------------------------------------------------------------------
    # Similar tickets and duplicates (docs/repeat-issues.md "In the service")

    def similar_index(self, runtime: Runtime) -> Any:
        """This worker's similar-tickets index (None: the rules list no similar tickets and check
        no duplicates). Opened on first use from its file (params `similar.index`, else beside
        the SQLite store; a server database without one keeps it in memory), caught up with the
        store or rebuilt from it; then caught up every `SIMILAR_CATCH_UP_SECONDS` with what the
        other workers stored, and with the last seconds of it before each duplicate check."""
        spec = runtime.rules.spec
        vectors = runtime.vectors
        wanted = spec.similar_tickets is not None or spec.duplicates is not None
        if not wanted or vectors is None or self.store is None:
            return None
        from urgency.similar import (
            QUICK_CATCH_UP_MARGIN,
            SimilarIndex,
            catch_up,
            index_path,
            open_index,
            rebuild_from_store,
        )

        scope, _path, index = self.similar_snapshot
        if index is not None and scope == vectors.scope:
            if time.monotonic() - self.similar_synced > SIMILAR_CATCH_UP_SECONDS:
                self.similar_synced = time.monotonic()
                catch_up(index, self.store)
            elif spec.duplicates is not None:
                # A copy sent to another worker right after the original: a duplicate check
                # must see it (a few seconds of rows, read by index range on the store).
                catch_up(index, self.store, margin=QUICK_CATCH_UP_MARGIN)
            return index
        with self._similar_lock:
            scope, _path, index = self.similar_snapshot
            if index is None or scope != vectors.scope:
                path = runtime.params.similar.index or index_path(self.settings.store_url())
                if path is not None:
                    index = open_index(path, self.store, vectors.scope, vectors.ndim)
                else:
                    index = rebuild_from_store(self.store, vectors.scope)
                    index = index or SimilarIndex(vectors.scope, vectors.ndim)
                self.similar_snapshot = (vectors.scope, path, index)
                self.similar_synced = time.monotonic()
                log.info("similar-tickets index: %d tickets (%s)", len(index), path or "in memory")
        return index

    def save_similar_index(self) -> None:
        """Write the index to its file (at shutdown: the next start only catches up)."""
        from urgency.similar import save_index

        _scope, path, index = self.similar_snapshot
        if path is not None and index is not None:
            save_index(index, path)  # type: ignore[arg-type]  # logs a read-only or full disk

    # -----------------------------------------------------------------------------------------
    # What the customer is told (the backlog part)

    def queues(self, runtime: Runtime, store: Store, now: datetime) -> Queues:
        """The teams' open queues and recent first-response times (`urgency.backlog.queues`),
        read from the store at most every `queue_seconds` (a query per request would be two
        scans of the store per scored ticket)."""
        read, snapshot = self.queue_snapshot
        if snapshot is None or time.monotonic() - read > self.queue_seconds:
            operations = runtime.params.operations
            snapshot = queues(
                store.open_tickets(),
                store.recent_times(now - timedelta(days=operations.recent_days)),
                levels=runtime.rules.levels,
                now=now,
                agents=team_agents(self.agents(runtime)[0]),
                window_days=operations.recent_days,
                default_response_hours=operations.default_response_hours,
            )
            self.queue_snapshot = (time.monotonic(), snapshot)
        return snapshot

    def breach_model(self, runtime: Runtime) -> object:
        """The champion breach model for this runtime's params (`urgency.backlog.load_breach_model`;
        None: none registered), loaded once per runtime."""
        loaded_for, model = self.breach_snapshot
        if loaded_for is not runtime:
            model = load_breach_model(runtime.params)
            self.breach_snapshot = (runtime, model)
        return model


def cluster_alert_row(alert: Any, centroid: Any) -> dict[str, Any]:
    """A `ClusterAlert` as `Store.record_cluster_alert` takes it."""
    burst = alert.burst
    return {
        "raised_at": burst.at,
        "title": alert.title,
        "count": burst.count,
        "burst_hours": burst.burst_hours,
        "baseline_per_hour": burst.baseline_per_hour,
        "expected": burst.expected,
        "p_value": burst.p_value,
        "explanation": alert.explanation,
        "ticket_ids": [str(ticket_id) for ticket_id in alert.ticket_ids],
        "centroid": centroid,
    }


def _utc(moment: datetime) -> datetime:
    """A stored time (SQLite gives it back without its offset: it was stored in UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

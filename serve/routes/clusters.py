"""GET /v1/clusters: this worker's repeat-issue clusters and alerts, each alert proposing a
parent incident, and every worker's alert episodes the store keeps (docs/repeat-issues.md "In
the service")."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from serve.deps import RuntimeDep, ScoreKey, ServiceDep, StoreDep
from serve.errors import ERRORS
from serve.schemas import ClusterAlertResult, Clusters, ClusterSummary, StoredClusterAlert
from urgency.store import Store

router = APIRouter(tags=["reports"])

# A cluster's newest tickets listed (an alert lists them all: the incident's children).
LISTED_TICKETS = 20
# The stored alert episodes listed at most (the newest of the window).
LISTED_ALERTS = 50


# The score scope: a helpdesk integration that scores tickets may link them to the proposed
# incident, and the clusters hold ticket ids and titles only, no ticket text.
@router.get("/v1/clusters", response_model=Clusters, responses=ERRORS)
def clusters(
    runtime_now: RuntimeDep,
    service: ServiceDep,
    store: StoreDep,
    _key: ScoreKey,
    min_size: Annotated[
        int, Query(ge=1, le=10_000, description="Only clusters of at least this many tickets.")
    ] = 2,
    limit: Annotated[
        int, Query(ge=1, le=1_000, description="At most this many clusters, largest first.")
    ] = 50,
) -> Clusters:
    """The clusters of the tickets this worker scored in the window (rules `clusters`), largest
    first, and those bursting now (most surprising first), each explained with its proposed
    parent incident (title, member tickets). With several workers, each sees the tickets it
    scored; `stored_alerts` are every worker's alert episodes of the window (the store's, one
    per burst), with the parent incident created in the helpdesk."""
    spec = runtime_now.rules.spec.clusters
    tracker = service.tracker(runtime_now)
    if spec is None or tracker is None:
        return Clusters(enabled=False, pid=os.getpid(), tickets=0, surge=False, alerts=[], clusters=[])
    now = tracker.latest or datetime.now(UTC)
    alerts = tracker.alerts(now)
    members = tracker.clusters()
    largest = sorted(
        ((cluster_id, ids) for cluster_id, ids in members.items() if len(ids) >= min_size),
        key=lambda item: (-len(item[1]), item[0]),
    )[:limit]
    return Clusters(
        enabled=True,
        pid=os.getpid(),
        window_days=spec.window_days,
        tickets=sum(len(ids) for ids in members.values()),
        surge=spec.surge and bool(alerts),
        alerts=[
            ClusterAlertResult(
                cluster_id=alert.cluster_id,
                title=alert.title,
                explanation=alert.explanation,
                count=alert.burst.count,
                burst_hours=alert.burst.burst_hours,
                baseline_per_hour=alert.burst.baseline_per_hour,
                expected=alert.burst.expected,
                p_value=alert.burst.p_value,
                at=alert.burst.at.isoformat(),
                ticket_ids=[str(id) for id in alert.ticket_ids],
            )
            for alert in alerts
        ],
        stored_alerts=stored_alerts(store, now - timedelta(days=spec.window_days)),
        clusters=[
            ClusterSummary(
                cluster_id=cluster_id,
                title=tracker.title(cluster_id),
                size=len(ids),
                ticket_ids=[str(id) for id in ids[-LISTED_TICKETS:]],
            )
            for cluster_id, ids in largest
        ],
    )


def stored_alerts(store: Store, since: datetime) -> list[StoredClusterAlert]:
    """The store's alert episodes raised since `since`, newest first."""

    def shown(row: dict[str, Any]) -> StoredClusterAlert:
        times = {name: row[name].isoformat() for name in ("raised_at", "last_seen_at")}
        return StoredClusterAlert.model_validate({**row, **times})

    return [shown(row) for row in store.cluster_alerts(since=since, limit=LISTED_ALERTS)]

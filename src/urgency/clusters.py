"""Repeat-issue clusters: tickets about the same thing, and an alert when one piles up.

`ClusterTracker` keeps the tickets of a sliding window (`window`, e.g. 7 days) in clusters of
their sentence vectors (the shared MiniLM vector every scored ticket already has), online: a new
ticket joins the cluster whose centroid is most similar to it when the cosine reaches
`threshold`, else it starts a cluster. Tickets older than the window leave their cluster.

`BurstDetector` decides when a cluster (or any key: the ServiceNow log's category, which has no
text) grows faster than its baseline: the count in the last `burst` span (e.g. 2 hours) against
a Poisson with the key's own rate before that span (over the rest of the window, at least
`min_rate` per hour so a new key is not infinitely surprising) or, when larger, its mean count in
the same hours of earlier days of the same kind (weekday or weekend: `daily`): an alert when at
least `min_count` arrived, more than on any of those days, and the Poisson tail P(X >= count) is
below `alpha`. Nothing alerts during
the first `warmup` (a day) after the first event: there is no baseline yet. Measured on the
ServiceNow incident log and on an injected burst (bench/bench_clusters.py, docs/repeat-issues.md
"Repeat-issue clusters").

An alert proposes a parent incident: a title from the cluster's most telling words (frequent in
the cluster, rare in the window) and the member tickets' ids, explained in one sentence
("cluster 'vpn connect' 23 tickets in 2 h, baseline 1.5/h: alert").
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

# How often (in event time) the trackers drop what left the window: each drop visits every key.
FORGET_EVERY = timedelta(minutes=15)


def poisson_tail(count: int, mean: float) -> float:
    """P(X >= count) for X ~ Poisson(mean)."""
    if count <= 0:
        return 1.0
    from scipy.stats import poisson

    return float(poisson.sf(count - 1, mean))


@dataclass(frozen=True)
class Burst:
    """A key whose last `burst` span holds `count` events where its baseline expects `expected`."""

    key: Any
    at: datetime
    count: int
    burst_hours: float
    baseline_per_hour: float
    expected: float
    p_value: float
    # Events of the key in the burst span, oldest first (their ids, when given).
    ids: tuple[Any, ...] = ()

    def explain(self, name: str | None = None) -> str:
        label = name if name is not None else str(self.key)
        return (
            f"cluster '{label}' {self.count} tickets in {self.burst_hours:g} h, baseline "
            f"{self.baseline_per_hour:.2g}/h (expected {self.expected:.2g}, Poisson tail "
            f"{self.p_value:.1e}): alert"
        )


class _Series:
    """One key's events in time order (times and ids side by side): counts in a span by bisection,
    so a key with thousands of events in the window costs a few comparisons per check."""

    __slots__ = ("ids", "times")

    def __init__(self) -> None:
        self.times: list[datetime] = []
        self.ids: list[Any] = []

    def add(self, at: datetime, id: Any) -> None:
        if not self.times or at >= self.times[-1]:
            self.times.append(at)
            self.ids.append(id)
        else:  # a late event goes where it belongs
            position = bisect.bisect_right(self.times, at)
            self.times.insert(position, at)
            self.ids.insert(position, id)

    def count(self, after: datetime, until: datetime) -> int:
        """Events in (after, until]."""
        return bisect.bisect_right(self.times, until) - bisect.bisect_right(self.times, after)

    def ids_in(self, after: datetime, until: datetime) -> list[Any]:
        return self.ids[bisect.bisect_right(self.times, after) : bisect.bisect_right(self.times, until)]

    def drop_before(self, start: datetime) -> None:
        cut = bisect.bisect_left(self.times, start)
        if cut:
            del self.times[:cut]
            del self.ids[:cut]

    def __len__(self) -> int:
        return len(self.times)


class BurstDetector:
    """Per key, the events of the last `window`, and whether the last `burst` span is a burst.

    `add(key, at, id)` records an event (events come in time order; a late one is counted where
    it belongs) and returns the Burst when this event makes the key burst and it was not
    bursting already (one alert per episode: a key alerts again only after a whole `burst` span
    in which it was never found bursting).
    `bursts(now)` lists the keys bursting at `now`."""

    def __init__(
        self,
        *,
        window: timedelta = timedelta(days=7),
        burst: timedelta = timedelta(hours=2),
        min_count: int = 5,
        alpha: float = 1e-4,
        min_rate: float = 0.02,
        warmup: timedelta = timedelta(hours=24),
        daily: bool = True,
    ) -> None:
        if burst <= timedelta(0) or window <= burst:
            raise ValueError(
                f"the burst span ({burst}) must be positive and shorter than the window ({window})"
            )
        if min_count < 1 or not 0 < alpha < 1 or min_rate <= 0:
            raise ValueError("min_count must be >= 1, alpha in (0, 1), min_rate > 0")
        self.window = window
        self.burst = burst
        self.min_count = min_count
        self.alpha = alpha
        self.min_rate = min_rate
        self.warmup = warmup
        self.daily = daily
        self._events: dict[Any, _Series] = {}
        self._bursting: dict[Any, datetime] = {}
        self._started: datetime | None = None
        self._latest: datetime | None = None
        self._forgotten: datetime | None = None

    def _forget(self, now: datetime, *, force: bool = False) -> None:
        # Memory only (`check` counts inside its spans): at most every 15 minutes of event time,
        # as it visits every key.
        if not force and self._forgotten is not None and now - self._forgotten < FORGET_EVERY:
            return
        self._forgotten = now
        start = now - self.window
        for key in list(self._events):
            events = self._events[key]
            events.drop_before(start)
            if not events:
                del self._events[key]
                self._bursting.pop(key, None)

    def add(self, key: Any, at: datetime, id: Any = None) -> Burst | None:
        if self._started is None or at < self._started:
            self._started = at
        self._events.setdefault(key, _Series()).add(at, id)
        now = max(at, self._latest or at)
        self._latest = now
        self._forget(now)
        found = self.check(key, now)
        if found is None:
            return None
        # One alert per episode: a key found bursting within a burst span of the last time it
        # was is the same episode (a 6-hour surge alerts once, not three times).
        last = self._bursting.get(key)
        self._bursting[key] = now
        if last is not None and now - last <= self.burst:
            return None
        return found

    def check(self, key: Any, now: datetime) -> Burst | None:
        """The key's Burst at `now`, or None when its last `burst` span is ordinary."""
        events = self._events.get(key)
        if not events:
            return None
        span_start = now - self.burst
        count = events.count(span_start, now)
        if count < self.min_count:
            return None
        # [now - window, span_start]: the instant (now - window) is just inside the window.
        before = events.count(now - self.window - timedelta(microseconds=1), span_start)
        # The baseline covers what was observed before the span: a tracker started yesterday
        # has one day of history, not a window's.
        started = self._started or span_start
        if now - started < self.warmup:
            return None
        observed_hours = (span_start - max(now - self.window, started)).total_seconds() / 3600
        rate = max(self.min_rate, before / observed_hours if observed_hours > 0 else 0.0)
        burst_hours = self.burst.total_seconds() / 3600
        expected = rate * burst_hours
        if self.daily:
            # Tickets come in a daily and weekly rhythm (a Monday morning is busier than the
            # week's mean hour, a Sunday quieter): the same span of each earlier day of the same
            # kind counts too. The burst must beat the busiest of them and be unlikely under
            # their mean.
            same_time = self._same_time_counts(events, now, started)
            if same_time:
                if count <= max(same_time):
                    return None
                expected = max(expected, sum(same_time) / len(same_time))
        p_value = poisson_tail(count, expected)
        if p_value >= self.alpha:
            return None
        return Burst(
            key=key,
            at=now,
            count=count,
            burst_hours=burst_hours,
            baseline_per_hour=rate,
            expected=expected,
            p_value=p_value,
            ids=tuple(events.ids_in(span_start, now)),
        )

    def _same_time_counts(self, events: _Series, now: datetime, started: datetime) -> list[int]:
        """The key's counts in the burst span's hours of each earlier day of the same kind
        (weekday, or Saturday and Sunday) that the window and the tracker's history cover; of
        every earlier day when none is of the same kind (the first weekend after the start).
        On the ServiceNow log, the day's kind halved the false alarms on quiet weeks."""
        same: list[int] = []
        other: list[int] = []
        weekend = now.weekday() >= 5
        day = timedelta(days=1)
        end = now - day
        # A span that began before the first event still counts: what it saw is the history.
        while end > max(now - self.window, started):
            (same if (end.weekday() >= 5) == weekend else other).append(events.count(end - self.burst, end))
            end -= day
        return same or other

    def bursts(self, now: datetime) -> list[Burst]:
        """Every key bursting at `now` (events older than the window forgotten first), the most
        surprising first."""
        self._forget(now, force=True)
        found = [burst for key in self._events if (burst := self.check(key, now)) is not None]
        return sorted(found, key=lambda burst: burst.p_value)


# ---------------------------------------------------------------------------------------------
# Clusters of sentence vectors


@dataclass(frozen=True)
class ClusterAlert:
    """A cluster growing faster than its baseline, and the parent incident it proposes."""

    cluster_id: int
    title: str  # from the cluster's most telling words
    burst: Burst
    ticket_ids: tuple[Any, ...]  # every member in the window, oldest first: the incident's children

    @property
    def explanation(self) -> str:
        return self.burst.explain(self.title)


@dataclass(frozen=True)
class ClusterUpdate:
    """Where `add` put a ticket: its cluster, the cosine to the cluster's centroid before it
    joined (None: it started the cluster), the cluster's size in the window, and the alert this
    ticket raised (None when none)."""

    ticket_id: Any
    cluster_id: int
    similarity: float | None
    size: int
    alert: ClusterAlert | None = None

    @property
    def new_cluster(self) -> bool:
        return self.similarity is None


@dataclass
class _Cluster:
    id: int
    total: np.ndarray  # the sum of the members' unit vectors
    members: deque[tuple[datetime, Any, np.ndarray, tuple[str, ...]]] = field(default_factory=deque)
    words: Counter[str] = field(default_factory=Counter)

    @property
    def centroid(self) -> np.ndarray:
        norm = float(np.linalg.norm(self.total))
        return self.total / norm if norm > 0 else self.total


class _Centroids:
    """The clusters' centroids as rows of one matrix (a free row reused, the matrix doubled when
    full): finding a ticket's nearest cluster is one matrix-vector product, not a stack of every
    centroid per ticket."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.matrix = np.zeros((64, dim), dtype=np.float32)
        self.alive = np.zeros(64, dtype=bool)
        self.cluster_of = np.zeros(64, dtype=np.int64)
        self.row_of: dict[int, int] = {}
        self.free: list[int] = list(range(63, -1, -1))

    def set(self, cluster_id: int, centroid: np.ndarray) -> None:
        row = self.row_of.get(cluster_id)
        if row is None:
            if not self.free:
                size = len(self.alive)
                self.matrix = np.vstack([self.matrix, np.zeros_like(self.matrix)])
                self.alive = np.concatenate([self.alive, np.zeros(size, dtype=bool)])
                self.cluster_of = np.concatenate([self.cluster_of, np.zeros(size, dtype=np.int64)])
                self.free = list(range(2 * size - 1, size - 1, -1))
            row = self.free.pop()
            self.row_of[cluster_id] = row
            self.alive[row] = True
            self.cluster_of[row] = cluster_id
        self.matrix[row] = centroid

    def remove(self, cluster_id: int) -> None:
        row = self.row_of.pop(cluster_id)
        self.alive[row] = False
        self.matrix[row] = 0
        self.free.append(row)

    def nearest(self, unit: np.ndarray) -> tuple[int, float] | None:
        if not self.row_of:
            return None
        cosines = self.matrix @ unit
        cosines[~self.alive] = -np.inf
        row = int(np.argmax(cosines))
        return int(self.cluster_of[row]), float(cosines[row])


def _unit(vector: Sequence[float] | np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).ravel()
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm) or norm == 0:
        raise ValueError("a ticket's vector must be finite and not all zeros")
    return vector / norm


class ClusterTracker:
    """Online clusters of the window's tickets, and their bursts (`BurstDetector`).

    `threshold`: the cosine to a centroid at which a ticket joins the cluster (measured: 0.6 on
    MiniLM vectors; docs/repeat-issues.md). The burst settings are `BurstDetector`'s."""

    def __init__(
        self,
        window: timedelta = timedelta(days=7),
        threshold: float = 0.6,
        *,
        burst: timedelta = timedelta(hours=2),
        min_count: int = 5,
        alpha: float = 1e-4,
        min_rate: float = 0.02,
        warmup: timedelta = timedelta(hours=24),
        daily: bool = True,
        title_words: int = 3,
    ) -> None:
        if not -1 <= threshold <= 1:
            raise ValueError(f"threshold {threshold}: a cosine, between -1 and 1")
        self.window = window
        self.threshold = threshold
        self.title_words = title_words
        self.detector = BurstDetector(
            window=window,
            burst=burst,
            min_count=min_count,
            alpha=alpha,
            min_rate=min_rate,
            warmup=warmup,
            daily=daily,
        )
        self._clusters: dict[int, _Cluster] = {}
        self._centroids: _Centroids | None = None
        self._next_id = 1
        self._words: Counter[str] = Counter()  # in how many window tickets each word occurs
        self._tickets = 0
        self._latest: datetime | None = None
        self._forgotten: datetime | None = None
        self._lock = threading.RLock()

    def __len__(self) -> int:
        """Clusters with a ticket in the window."""
        return len(self._clusters)

    @property
    def latest(self) -> datetime | None:
        """The latest time the tracker has seen (a ticket's, or an `alerts` call's): its clock,
        which a caller whose tickets carry their own times asks `alerts` at."""
        return self._latest

    def _forget(self, now: datetime, *, force: bool = False) -> None:
        # At most every FORGET_EVERY of event time (it visits every cluster): a centroid keeps a
        # ticket up to 15 minutes past the window.
        if not force and self._forgotten is not None and now - self._forgotten < FORGET_EVERY:
            return
        self._forgotten = now
        start = now - self.window
        for cluster_id in list(self._clusters):
            cluster = self._clusters[cluster_id]
            left = False
            while cluster.members and cluster.members[0][0] < start:
                _, _, vector, words = cluster.members.popleft()
                cluster.total -= vector
                cluster.words.subtract(words)
                self._words.subtract(words)
                self._tickets -= 1
                left = True
            if not cluster.members:
                del self._clusters[cluster_id]
                self._centroids.remove(cluster_id)
            elif left:
                self._centroids.set(cluster_id, cluster.centroid)

    def add(
        self, ticket_id: Any, vector: Sequence[float] | np.ndarray, created_at: datetime, text: str = ""
    ) -> ClusterUpdate:
        """Put a ticket into its cluster. `vector`: its sentence vector (any scale: it is
        normalised); `text` (optional): its words name the cluster. Thread-safe (the service
        scores in a thread pool)."""
        with self._lock:
            return self._add(ticket_id, vector, created_at, text)

    def _add(
        self, ticket_id: Any, vector: Sequence[float] | np.ndarray, created_at: datetime, text: str
    ) -> ClusterUpdate:
        from urgency.knowledge import tokens

        unit = _unit(vector)
        now = max(created_at, self._latest or created_at)
        self._latest = now
        self._forget(now)
        if self._centroids is None:
            self._centroids = _Centroids(unit.shape[0])
        if self._centroids.dim != unit.shape[0]:
            raise ValueError(
                f"a ticket's vector has {unit.shape[0]} values, the clusters' {self._centroids.dim}"
            )
        best, similarity = None, None
        nearest = self._centroids.nearest(unit)
        if nearest is not None and nearest[1] >= self.threshold:
            best, similarity = self._clusters[nearest[0]], nearest[1]
        if best is None:
            best = _Cluster(self._next_id, np.zeros_like(unit))
            self._clusters[best.id] = best
            self._next_id += 1
        words = tuple(dict.fromkeys(tokens(text))) if text else ()
        members = best.members
        if members and created_at < members[-1][0]:
            items = sorted([*members, (created_at, ticket_id, unit, words)], key=lambda item: item[0])
            members.clear()
            members.extend(items)
        else:
            members.append((created_at, ticket_id, unit, words))
        best.total += unit
        self._centroids.set(best.id, best.centroid)
        best.words.update(words)
        self._words.update(words)
        self._tickets += 1
        burst = self.detector.add(best.id, created_at, ticket_id)
        alert = self._alert(best, burst) if burst is not None else None
        return ClusterUpdate(ticket_id, best.id, similarity, len(best.members), alert)

    def title(self, cluster_id: int) -> str:
        """The cluster's most telling words: frequent in it, rare in the window (a TF-IDF); its id
        when its tickets came without text."""
        with self._lock:
            return self._title(cluster_id)

    def _title(self, cluster_id: int) -> str:
        cluster = self._clusters.get(cluster_id)
        if cluster is None or not +cluster.words:
            return f"cluster {cluster_id}"
        size = len(cluster.members)

        def weight(word: str) -> float:
            inside = cluster.words[word]
            return (inside / size) * math.log((1 + self._tickets) / (1 + self._words[word]))

        # At least two members say it (or the cluster is one ticket): one ticket's odd word
        # does not name a cluster.
        words = [word for word, count in (+cluster.words).items() if count >= min(2, size)]
        # Stable: equal weights keep the order the words first came in.
        ranked = sorted(words, key=lambda word: -weight(word))
        return " ".join(ranked[: self.title_words]) or f"cluster {cluster_id}"

    def _alert(self, cluster: _Cluster, burst: Burst) -> ClusterAlert:
        return ClusterAlert(
            cluster_id=cluster.id,
            title=self.title(cluster.id),
            burst=burst,
            ticket_ids=tuple(member[1] for member in cluster.members),
        )

    def alerts(self, now: datetime) -> list[ClusterAlert]:
        """The clusters bursting at `now`, the most surprising first (tickets older than the
        window leave first)."""
        with self._lock:
            self._forget(now, force=True)
            self._latest = max(now, self._latest or now)
            return [
                self._alert(self._clusters[burst.key], burst)
                for burst in self.detector.bursts(now)
                if burst.key in self._clusters
            ]

    def members(self, cluster_id: int) -> list[Any]:
        """The ids of a cluster's tickets in the window, oldest first."""
        with self._lock:
            cluster = self._clusters.get(cluster_id)
            return [member[1] for member in cluster.members] if cluster else []

    def centroid(self, cluster_id: int) -> np.ndarray | None:
        """The cluster's unit centroid (None: no such cluster in the window): a stored alert's,
        which tells two workers' alerts of one burst apart from two bursts."""
        with self._lock:
            cluster = self._clusters.get(cluster_id)
            return None if cluster is None else cluster.centroid.copy()

    def clusters(self) -> dict[int, list[Any]]:
        """Every cluster in the window: its id -> its tickets' ids, oldest first."""
        with self._lock:
            return {cluster_id: [m[1] for m in c.members] for cluster_id, c in self._clusters.items()}

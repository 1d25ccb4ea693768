"""Repeat-issue clusters: the online clusters on tiny random vectors, the burst detector on
Poisson streams (a stationary one rarely alerts, a burst always does), the explained alert."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from urgency.clusters import BurstDetector, ClusterTracker, poisson_tail

T0 = datetime(2026, 11, 2, 0, 0)
DIM = 16


def unit(rng: np.random.Generator, centre: np.ndarray | None = None, noise: float = 0.1) -> np.ndarray:
    vector = rng.normal(size=DIM) if centre is None else centre + noise * rng.normal(size=DIM)
    return vector / np.linalg.norm(vector)


def poisson_times(
    rng: np.random.Generator, rate_per_hour: float, start: datetime, hours: float
) -> list[datetime]:
    gaps = rng.exponential(1 / rate_per_hour, int(rate_per_hour * hours * 2) + 20)
    offsets = np.cumsum(gaps)
    return [start + timedelta(hours=float(h)) for h in offsets[offsets < hours]]


def test_poisson_tail() -> None:
    assert poisson_tail(0, 3.0) == 1.0
    assert poisson_tail(1, 2.0) == pytest.approx(1 - np.exp(-2))
    assert poisson_tail(10, 1.0) < 1e-6


def test_similar_tickets_share_a_cluster_and_others_start_their_own() -> None:
    rng = np.random.default_rng(0)
    vpn = unit(rng)
    tracker = ClusterTracker(threshold=0.8)
    first = tracker.add("t1", vpn, T0, "VPN will not connect")
    second = tracker.add("t2", unit(rng, vpn, 0.05), T0 + timedelta(minutes=5), "vpn connection fails")
    other = tracker.add("t3", -vpn, T0 + timedelta(minutes=6), "printer jam")
    assert first.new_cluster and first.similarity is None and first.size == 1
    assert second.cluster_id == first.cluster_id and second.similarity > 0.9 and second.size == 2
    assert other.new_cluster and other.cluster_id != first.cluster_id
    assert len(tracker) == 2 and tracker.members(first.cluster_id) == ["t1", "t2"]
    assert tracker.title(first.cluster_id).startswith("vpn")
    assert tracker.title(other.cluster_id) == "printer jam"


def test_tickets_leave_their_cluster_after_the_window() -> None:
    rng = np.random.default_rng(1)
    tracker = ClusterTracker(window=timedelta(days=1), threshold=0.8)
    centre = unit(rng)
    a = tracker.add("old", centre, T0)
    tracker.add("other", -centre, T0 + timedelta(hours=20))
    later = tracker.add("new", unit(rng, centre, 0.05), T0 + timedelta(days=1, hours=1))
    # The old ticket left, and its cluster with it: the new one starts a cluster.
    assert later.new_cluster and later.cluster_id != a.cluster_id
    assert tracker.members(a.cluster_id) == [] and len(tracker) == 2


def test_bad_vectors_and_settings_are_clear_errors() -> None:
    tracker = ClusterTracker()
    with pytest.raises(ValueError, match="finite and not all zeros"):
        tracker.add("z", np.zeros(DIM), T0)
    with pytest.raises(ValueError, match="finite and not all zeros"):
        tracker.add("n", np.full(DIM, np.nan), T0)
    tracker.add("a", np.ones(DIM), T0)
    with pytest.raises(ValueError, match="has 3 values, the clusters' 16"):
        tracker.add("b", np.ones(3), T0)
    with pytest.raises(ValueError, match="threshold 2"):
        ClusterTracker(threshold=2)
    with pytest.raises(ValueError, match="shorter than the window"):
        BurstDetector(window=timedelta(hours=1), burst=timedelta(hours=2))


def _burst_scenario(
    seed: int, background_rate: float, burst_size: int
) -> tuple[ClusterTracker, list, set[str], datetime]:
    """Two days of random tickets (each its own topic), then `burst_size` near-duplicates within
    two hours."""
    rng = np.random.default_rng(seed)
    tracker = ClusterTracker(threshold=0.7)
    centre = unit(rng)
    background = [
        (at, f"bg-{n}", unit(rng), "something else")
        for n, at in enumerate(poisson_times(rng, background_rate, T0, 60))
    ]
    burst_start = T0 + timedelta(hours=40)
    burst = [
        (
            burst_start + timedelta(minutes=float(m)),
            f"vpn-{n}",
            unit(rng, centre, 0.1),
            "vpn down cannot connect",
        )
        for n, m in enumerate(np.sort(rng.uniform(0, 120, burst_size)))
    ]
    alerts = []
    for at, ticket_id, vector, text in sorted(background + burst, key=lambda item: item[0]):
        update = tracker.add(ticket_id, vector, at, text)
        if update.alert is not None:
            alerts.append(update.alert)
    return tracker, alerts, {b[1] for b in burst}, burst_start


def test_a_burst_is_alerted_once_with_its_parent_incident_explained() -> None:
    tracker, alerts, burst_ids, burst_start = _burst_scenario(seed=3, background_rate=4.0, burst_size=30)
    assert len(alerts) == 1
    [alert] = alerts
    assert set(alert.ticket_ids) <= burst_ids and len(alert.ticket_ids) >= 5
    assert alert.burst.at <= burst_start + timedelta(hours=2)
    assert alert.title.startswith(("vpn", "down", "cannot", "connect"))
    assert alert.explanation.startswith(
        f"cluster '{alert.title}' {alert.burst.count} tickets in 2 h, baseline "
    )
    assert alert.explanation.endswith(": alert")
    # Still bursting at the end of the burst; calm a day later.
    assert [a.cluster_id for a in tracker.alerts(burst_start + timedelta(hours=2))] == [alert.cluster_id]
    assert tracker.alerts(burst_start + timedelta(days=1)) == []


def test_nothing_alerts_during_the_warm_up() -> None:
    detector = BurstDetector()
    found = [detector.add("k", T0 + timedelta(minutes=n), n) for n in range(50)]
    assert found == [None] * 50
    later = BurstDetector(warmup=timedelta(0))
    assert any(later.add("k", T0 + timedelta(minutes=n), n) for n in range(50))


def test_the_daily_rhythm_is_the_baseline_not_a_burst() -> None:
    """Every morning 9-11 brings 20 tickets, nights none: a flat baseline would call each morning
    a burst; the daily one does not, and still sees a morning twice as busy as usual."""
    rng = np.random.default_rng(5)
    flat, daily = BurstDetector(daily=False), BurstDetector()
    flat_alerts = daily_alerts = 0
    for day in range(8):
        morning = T0 + timedelta(days=day, hours=9)
        extra = 40 if day == 7 else 20
        for minute in np.sort(rng.uniform(0, 120, extra)):
            at = morning + timedelta(minutes=float(minute))
            flat_alerts += flat.add("k", at) is not None
            found = daily.add("k", at)
            if found is not None:
                daily_alerts += 1
                assert day == 7
    assert flat_alerts >= 5
    assert daily_alerts == 1


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), rate=st.floats(0.2, 20.0))
def test_a_stationary_poisson_stream_rarely_alerts(seed: int, rate: float) -> None:
    """Four days of one key at a constant rate: at most one (false) alert; the detector's alpha
    makes even one rare."""
    rng = np.random.default_rng(seed)
    detector = BurstDetector()
    alerts = [b for at in poisson_times(rng, rate, T0, 96) if (b := detector.add("k", at)) is not None]
    assert len(alerts) <= 1


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), rate=st.floats(0.1, 5.0))
@example(seed=20563507, rate=0.125)  # found in CI: the key's first ticket came after a day
def test_a_burst_always_alerts(seed: int, rate: float) -> None:
    """A steady key, then within two hours ten times its usual two hours plus twenty: an alert
    during the burst, every time."""
    rng = np.random.default_rng(seed)
    detector = BurstDetector()
    # The detector runs from T0 (another key's ticket): a slow key's first ticket may come late,
    # and the warm-up counts from the detector's first ticket, not the key's.
    detector.add("other", T0)
    for at in poisson_times(rng, rate, T0, 48):
        detector.add("k", at)
    start = T0 + timedelta(hours=48)
    size = int(20 + 10 * rate * 2)
    during = [
        detector.add("k", start + timedelta(minutes=float(m)), f"b{n}")
        for n, m in enumerate(np.sort(rng.uniform(0, 120, size)))
    ]
    assert any(burst is not None for burst in during)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(12, 40))
def test_a_burst_of_near_duplicates_always_alerts_on_their_cluster(seed: int, size: int) -> None:
    """(A random background ticket may sit near the burst's topic and join its cluster: the alert
    is on the burst's cluster, not necessarily on burst tickets only.)"""
    _, alerts, burst_ids, _ = _burst_scenario(seed, background_rate=3.0, burst_size=size)
    assert alerts
    assert all(len(burst_ids & set(alert.ticket_ids)) > len(alert.ticket_ids) / 2 for alert in alerts)


def test_threads_adding_at_once_lose_no_ticket() -> None:
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(9)
    centres = [unit(rng) for _ in range(4)]
    tickets = [(f"t{n}", unit(rng, centres[n % 4], 0.05), T0 + timedelta(seconds=n)) for n in range(400)]
    tracker = ClusterTracker(threshold=0.8)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda t: tracker.add(*t), tickets))
    clusters = tracker.clusters()
    assert sorted(t for ids in clusters.values() for t in ids) == sorted(t[0] for t in tickets)
    assert len(clusters) == 4


def test_a_late_event_is_counted_where_it_belongs() -> None:
    detector = BurstDetector(warmup=timedelta(0), min_count=3, daily=False)
    now = T0 + timedelta(days=2)
    assert detector.add("k", now, "last") is None
    assert detector.add("k", now - timedelta(hours=1), "late") is None
    found = detector.add("k", now - timedelta(minutes=30), "later")
    assert found is not None and found.ids == ("late", "later", "last") and found.at == now
    tracker = ClusterTracker(threshold=0.5)
    vector = np.ones(DIM)
    tracker.add("b", vector, T0 + timedelta(hours=1))
    tracker.add("a", vector, T0)
    assert list(tracker.clusters().values()) == [["a", "b"]]

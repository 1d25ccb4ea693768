"""Simulated agents for the demo: closed tickets whose agents' final values are held-back labels.

A new user has no agents' decisions yet, but the demo data has true labels the models never
trained on: each head's TEST split. `simulate_closed_tickets` takes those tickets, predicts and
decides them through `urgency.scoring.score_frame` (the one predict-then-decide path), and plays the
agents: their final urgency / category / sentiment is the true label where the ticket has one,
their priority and team are what the rules decide with the true values in place of the
model's. The result is a closed-tickets CSV (docs/reports.md) for `urgency report agreement`.

What is simulated (seeded, so the same seed gives the same file), and only so that every slice
and the SLA section have something to show:
- plan (free 35%, standard 35%, premium 20%, enterprise 10%), channel (email 45%, web 30%,
  chat 15%, phone 10%) and region (emea 60%, americas 40%); language is the ticket's own;
- created_at: uniform over the 8 weeks before `now`; each day's tickets are decided as of
  the last one created that day (so no ticket ages past the rules' ageing rule);
- first_response_at / resolved_at: the time to the deadline times a log-normal factor (median
  0.6 for the response, 0.7 for the resolution, so roughly 15% and 24% miss); where the rules
  set no deadline, an exponential wait (mean 4 h after creation / 48 h after the response);
  never resolved before answered; 5% have no response time and 10% no resolution time recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from urgency.agreement import CLOSED_TICKET_COLUMNS
from urgency.config import HEADS, DataParams, SplitParams
from urgency.data import configured_head_dataset
from urgency.decision import NO_DEADLINE
from urgency.files import write_table_atomic
from urgency.rules import RuleSet
from urgency.scoring import decide_frame, score_frame

PLANS = {"free": 0.35, "standard": 0.35, "premium": 0.2, "enterprise": 0.1}
CHANNELS = {"email": 0.45, "web": 0.3, "chat": 0.15, "phone": 0.1}
REGIONS = {"emea": 0.6, "americas": 0.4}
WEEKS = 8
# The closed-tickets columns in the documented order, then the slices.
COLUMNS = (*CLOSED_TICKET_COLUMNS, "plan", "language", "channel", "region", "source")


def held_back(
    tickets: pd.DataFrame,
    data: DataParams,
    splits: SplitParams,
    *,
    rows: int,
    seed: int,
    heads: tuple[str, ...] = HEADS,
) -> pd.DataFrame:
    """Up to `rows` tickets from the heads' test splits (an equal share per head, seeded), with
    `true_<head>` set where the ticket is in that head's test split."""
    rng = np.random.default_rng(seed)
    truths: dict[str, pd.Series] = {}
    chosen: list[str] = []
    per_head = -(-rows // len(heads))  # ceiling
    for head in heads:
        dataset = configured_head_dataset(tickets, head, data, splits)
        test = dataset[dataset["split"] == "test"]
        truths[head] = test.set_index("id")["label"]
        ids = test["id"].to_numpy()
        chosen.extend(rng.choice(ids, size=min(per_head, len(ids)), replace=False).tolist())
    chosen = list(dict.fromkeys(chosen))[:rows]
    frame = tickets.set_index("id").loc[chosen].reset_index()
    for head in heads:
        frame[f"true_{head}"] = frame["id"].map(truths[head]).astype(object)
        frame[f"true_{head}"] = frame[f"true_{head}"].where(frame[f"true_{head}"].notna(), None)
    return frame


def _pick(rng: np.random.Generator, shares: Mapping[str, float], size: int) -> np.ndarray:
    return rng.choice(list(shares), size=size, p=list(shares.values()))


def simulate_closed_tickets(
    models: dict[str, Any],
    rules: RuleSet,
    tickets: pd.DataFrame,
    data: DataParams,
    splits: SplitParams,
    *,
    now: datetime,
    rows: int = 3000,
    seed: int = 0,
    subject_column: str | None = "subject",
    body_column: str = "body",
    on_day: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Closed tickets for the demo: the models' and rules' decisions next to simulated agents'
    final values (see the module's docstring for what is simulated)."""
    rng = np.random.default_rng(seed)
    # Only the heads that have a model: a helpdesk without sentiment labels has no sentiment.
    heads = tuple(head for head in HEADS if head in models)
    chosen = held_back(tickets, data, splits, rows=rows, seed=seed, heads=heads)
    n = len(chosen)
    created = now - pd.to_timedelta(rng.uniform(0, WEEKS * 7 * 24 * 3600, n).round(), unit="s")
    frame = pd.DataFrame(
        {
            "ticket_id": chosen["id"],
            "subject": chosen["subject"],
            "body": chosen["body"],
            "language": chosen["language"],
            "source": chosen["source"],
            "created_at": [moment.strftime("%Y-%m-%dT%H:%M:%SZ") for moment in created],
            "plan": _pick(rng, PLANS, n),
            "channel": _pick(rng, CHANNELS, n),
            "region": _pick(rng, REGIONS, n),
        }
    )
    truth = chosen[[f"true_{head}" for head in heads]]
    day = pd.Series(created.floor("D"), index=frame.index)
    decided = []
    for _, part in frame.groupby(day, sort=True):
        # Decided as of the day's last ticket: deadlines count from each ticket's created time,
        # and no ticket is older than a day, so ageing rules stay out of the simulation.
        moment = pd.Timestamp(part["created_at"].max()).to_pydatetime()
        scored = score_frame(
            models,
            part,
            rules,
            now=moment,
            surge=False,
            subject_column=subject_column,
            body_column=body_column,
            max_text_chars=data.max_text_chars,
        ).frame()
        decided.append(_with_agents(scored, truth.loc[part.index], rules, moment))
        if on_day:
            on_day(len(part))
    closed = pd.concat(decided).loc[frame.index]
    _add_times(closed, rng)
    # A head with no model keeps its (empty) columns: the closed-tickets CSV has one layout.
    return closed.reindex(columns=list(COLUMNS)).reset_index(drop=True)


def _with_agents(scored: pd.DataFrame, truth: pd.DataFrame, rules: RuleSet, now: datetime) -> pd.DataFrame:
    """The agents' final values: the true label of each head where the ticket has one; the
    priority (where the true urgency is known) and team the rules give with those values."""
    corrected = scored.copy()
    for head in [head for head in HEADS if f"true_{head}" in truth.columns]:
        known = truth[f"true_{head}"].notna()
        corrected.loc[known, head] = truth.loc[known, f"true_{head}"]
        corrected.loc[known, f"{head}_confidence"] = 1.0  # the agent is sure
        scored[f"agent_{head}"] = truth[f"true_{head}"]
    agents = decide_frame(corrected, rules, now, surge=False)
    if "true_urgency" in truth.columns:
        urgency_known = truth["true_urgency"].notna()
    else:  # no urgency head: no agent priority to simulate
        urgency_known = pd.Series(False, index=truth.index)
    scored["agent_priority"] = agents["priority"].where(urgency_known, None)
    scored["agent_team"] = agents["team"]
    return scored


def _add_times(frame: pd.DataFrame, rng: np.random.Generator) -> None:
    created = pd.to_datetime(frame["created_at"], utc=True)
    answered = created
    for due_column, done_column, median, fallback_hours, unrecorded in (
        ("first_response_due", "first_response_at", 0.6, 4.0, 0.05),
        ("resolution_due", "resolved_at", 0.7, 48.0, 0.10),
    ):
        due_text = frame[due_column].where(frame[due_column] != NO_DEADLINE)
        due = pd.to_datetime(due_text, utc=True, format="ISO8601")
        factor = np.exp(rng.normal(np.log(median), 0.5, len(frame)))
        hours = pd.Series(
            pd.to_timedelta(rng.exponential(fallback_hours, len(frame)), unit="h"), index=frame.index
        )
        # Without a deadline: some hours after the previous step (creation, then the response).
        done = (created + (due - created) * factor).fillna(answered + hours).dt.round("s")
        done = done.where(done >= answered, answered)  # not resolved before it was answered
        frame[done_column] = done.where(rng.random(len(frame)) >= unrecorded).dt.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        frame[due_column] = due_text
        answered = done


def write_closed_tickets(frame: pd.DataFrame, path: Path) -> None:
    """The CSV, written whole or not at all."""
    write_table_atomic(frame, path, kind="csv")


def default_now() -> datetime:
    """The start of the current hour (UTC): reruns within an hour give the same file."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

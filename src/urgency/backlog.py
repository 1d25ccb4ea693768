"""The open backlog and what the customer is told (docs/operations.md).

Pure functions over the store's frames (`Store.open_tickets`, `Store.recent_times`):

- `build_backlog`: each open ticket by priority, then its nearest unmet deadline, then when it
  was created (the queue's order), with the hours left to each deadline (negative: breached), the
  queue ahead of it in its team, the team's median handling time and agents, and the breach
  risk of its nearest unmet deadline (`breach_risk.rules_risk`; the breach model's beside it
  when one is fitted); `summarise`: counts by priority and team;
- `expected_first_response`: when a newly scored ticket can expect its first answer, from the
  queue ahead of it and the team's recent first-response times, and the sentence a customer
  reads. The truth, even when it is later than the deadline (then `at_risk`).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from urgency.breach_risk import expected_wait_hours, features_at_opening, rules_risk
from urgency.breach_risk import load_breach_model as load_champion
from urgency.decision import iso

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from urgency.agents import Agents
    from urgency.config import OperationsParams, Params
    from urgency.store import Store

# A risk at or above this counts the ticket as at risk in the summary (breached ones included).
AT_RISK = 0.5
# The backlog's columns, in order (`build_backlog`); `breach_risk_model` is null without a model.
BACKLOG_COLUMNS = (
    "ticket_id",
    "status",
    "priority",
    "team",
    "assignee",
    "created_at",
    "first_response_due",
    "resolution_due",
    "first_response_hours_left",
    "resolution_hours_left",
    "next_deadline",
    "hours_left",
    "queue_ahead",
    "agents",
    "median_handling_hours",
    "handling_from",
    "expected_done_hours",
    "breach_risk",
    "breach_risk_model",
)
_NEVER = math.inf  # a missing deadline or created time sorts after every real one


def _moment(value: Any) -> datetime | None:
    """A store time as an aware UTC datetime (SQLite gives naive UTC times; pandas NaT/None)."""
    import pandas as pd

    if value is None or pd.isna(value):  # NaT is a datetime too
        return None
    if not isinstance(value, datetime) or isinstance(value, pd.Timestamp):
        value = pd.Timestamp(value).to_pydatetime()
    return value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)


def _value(value: Any) -> Any:
    """A frame's cell with pandas' missing values (NaN, NaT) as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def _hours(later: datetime | None, earlier: datetime) -> float | None:
    return None if later is None else (later - earlier).total_seconds() / 3600


def order_key(rank: int, due: datetime | None, created: datetime | None) -> tuple[int, float, float]:
    """The queue's order: the priority's rank (the rules' levels, most urgent first), the nearest
    unmet deadline, then first come - as the rules' `order_key` sorts a scored file."""
    return (
        rank,
        due.timestamp() if due is not None else _NEVER,
        created.timestamp() if created is not None else _NEVER,
    )


def rank_of(levels: Sequence[str], priority: Any) -> int:
    """The priority's place among the rules' levels (most urgent first)."""
    # A level the rules no longer have (the rules changed since it was scored) sorts last.
    return levels.index(priority) if priority in levels else len(levels)


# ---------------------------------------------------------------------------------------------
# Team figures


def team_medians(
    recent: pd.DataFrame, *, now: datetime, window_days: int
) -> tuple[dict[str, float], dict[str, float]]:
    """The teams' median handling hours (resolved - created) and median first-response hours
    (first answered - created) over the tickets resolved / first answered in the `window_days`
    before `now` (`Store.recent_times`); a team without such tickets is absent."""
    if not len(recent):
        return {}, {}
    start, end_of_window = _timestamp(now - timedelta(days=window_days)), _timestamp(now)
    team = recent["team"]
    created = _times(recent, "created_at")
    medians = []
    for name in ("resolved_at", "first_response_at"):
        end = _times(recent, name)
        kept = team.notna() & created.notna() & end.between(start, end_of_window) & (end >= created)
        hours = (end[kept] - created[kept]).dt.total_seconds() / 3600
        medians.append({str(t): float(h) for t, h in hours.groupby(team[kept]).median().items()})
    return medians[0], medians[1]


def _timestamp(moment: datetime) -> pd.Timestamp:
    import pandas as pd

    return pd.Timestamp(moment).tz_convert("UTC") if moment.tzinfo else pd.Timestamp(moment, tz="UTC")


def _times(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column of store times as UTC timestamps (naive ones - SQLite's - are UTC; missing: NaT)."""
    import pandas as pd

    if column not in frame:
        return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    return pd.to_datetime(frame[column], utc=True, errors="coerce")


def team_agents(agents: Agents | None) -> dict[str, int]:
    """Agents per team in the agents file (params `operations.agents`); {} without one (every
    team then counts one agent)."""
    counts: dict[str, int] = {}
    for agent in agents.agents if agents is not None else ():
        for team in agent.teams:
            counts[team] = counts.get(team, 0) + 1
    return counts


def agents_of(agents: Mapping[str, int], team: str | None) -> int:
    return max(int(agents.get(team or "", 1)), 1)


# ---------------------------------------------------------------------------------------------
# The open backlog


def _nearest_unmet(
    first_response_due: datetime | None, resolution_due: datetime | None, answered: bool
) -> tuple[str | None, datetime | None]:
    """The deadline the ticket must meet next: the first response until it was answered (met
    or not, it can no longer be met later), then the resolution."""
    if first_response_due is not None and not answered:
        return "first_response", first_response_due
    if resolution_due is not None:
        return "resolution", resolution_due
    return None, None


def build_backlog(
    open_tickets: pd.DataFrame,
    recent: pd.DataFrame,
    *,
    levels: Sequence[str],
    now: datetime,
    agents: Mapping[str, int],
    window_days: int,
    default_handling_hours: float,
    breach_model: Any = None,
) -> pd.DataFrame:
    """The open backlog (`BACKLOG_COLUMNS`), in the queue's order: priority, nearest unmet
    deadline, created. `open_tickets`: `Store.open_tickets()`; `recent`: `Store.recent_times`;
    `breach_model`: a fitted `breach_risk.BreachModel` (its `predict_risk` fills
    `breach_risk_model`) or None."""
    import numpy as np
    import pandas as pd

    if not len(open_tickets):
        return pd.DataFrame(columns=list(BACKLOG_COLUMNS))
    handling, _response = team_medians(recent, now=now, window_days=window_days)
    source = open_tickets.reset_index(drop=True)
    at = _timestamp(now)
    first_due, resolution_due = _times(source, "first_response_due"), _times(source, "resolution_due")
    created = _times(source, "created_at").fillna(_times(source, "opened_at"))
    answered = _times(source, "first_response_at").notna()
    # The deadline to meet next: the first response until it was answered (met or not, it can
    # no longer be met later), then the resolution.
    first_next = first_due.notna() & ~answered
    due = first_due.where(first_next, resolution_due)
    state_team = source["state_team"] if "state_team" in source else pd.Series(None, index=source.index)
    fields = source["fields"] if "fields" in source else pd.Series(None, index=source.index)

    def hours_to(moments: pd.Series) -> pd.Series:
        return (moments - at).dt.total_seconds() / 3600

    frame = pd.DataFrame(
        {
            "ticket_id": source["ticket_id"],
            "status": source.get("status"),
            "priority": source["priority"],
            "team": state_team.where(state_team.notna(), source["team"]),
            "assignee": source.get("assignee"),
            "created_at": created,
            "first_response_due": first_due,
            "resolution_due": resolution_due,
            "first_response_hours_left": hours_to(first_due).where(~answered),
            "resolution_hours_left": hours_to(resolution_due),
            "next_deadline": np.where(
                first_next, "first_response", np.where(resolution_due.notna(), "resolution", None)
            ),
            "hours_left": hours_to(due),
            "category": source.get("category"),
            "plan": fields.map(lambda value: value.get("plan") if isinstance(value, Mapping) else None),
            "_rank": source["priority"].map(lambda priority: rank_of(levels, priority)),
            "_due": due,
            "_created": created,
        }
    )
    frame = frame.sort_values(["_rank", "_due", "_created"], kind="stable", na_position="last")
    frame = frame.reset_index(drop=True)
    # The queue ahead: the team's open tickets earlier in the queue's order.
    frame["queue_ahead"] = frame.groupby("team", dropna=False).cumcount()
    frame["agents"] = [agents_of(agents, team) for team in frame["team"]]
    known = frame["team"].isin(list(handling))
    frame["median_handling_hours"] = (
        frame["team"].map(handling).where(known, default_handling_hours).astype(float)
    )
    frame["handling_from"] = np.where(known, "history", "default")
    frame["expected_done_hours"] = [
        expected_wait_hours(int(queue), float(hours), int(count))
        for queue, hours, count in zip(
            frame["queue_ahead"], frame["median_handling_hours"], frame["agents"], strict=True
        )
    ]
    frame["breach_risk"] = [
        None if pd.isna(left) else rules_risk(float(left), int(queue), float(hours), int(count))
        for left, queue, hours, count in zip(
            frame["hours_left"],
            frame["queue_ahead"],
            frame["median_handling_hours"],
            frame["agents"],
            strict=True,
        )
    ]
    frame["breach_risk_model"] = model_risks(breach_model, frame) if breach_model is not None else None
    return frame[list(BACKLOG_COLUMNS)]


def model_risks(breach_model: Any, backlog: pd.DataFrame) -> np.ndarray:
    """The breach model's risk of each backlog row (`breach_risk.features_at_opening`: the queue
    ahead as its queue length); NaN where the ticket has no created time."""
    import numpy as np
    import pandas as pd

    frame = backlog.rename(columns={"queue_ahead": "queue_length"})
    known = pd.to_datetime(frame["created_at"], utc=True, errors="coerce").notna().to_numpy()
    risks = np.full(len(frame), np.nan)
    if known.any():
        risks[known] = breach_model.predict_risk(features_at_opening(frame[known]))
    return risks


def load_breach_model(params: Params) -> Any:
    """The champion breach model (`breach_risk.load_breach_model`) or None."""
    return load_champion(params.mlflow)


def summarise(backlog: pd.DataFrame) -> list[dict[str, Any]]:
    """Counts by priority and team: open tickets, breached (the nearest deadline passed), at
    risk (rules-based risk >= `AT_RISK`, breached included), and the largest queue."""
    summary = []
    if not len(backlog):
        return summary
    for (priority, team), group in backlog.groupby(["priority", "team"], sort=False, dropna=False):
        left = group["hours_left"].astype(float)
        risk = group["breach_risk"].astype(float)
        summary.append(
            {
                "priority": priority,
                "team": team,
                "tickets": len(group),
                "breached": int((left <= 0).sum()),
                "at_risk": int((risk >= AT_RISK).sum()),
            }
        )
    return summary


def backlog_records(backlog: pd.DataFrame) -> list[dict[str, Any]]:
    """The backlog as JSON-ready records: times as ISO UTC text, hours rounded, nulls as None."""
    import pandas as pd

    records = []
    for row in backlog.to_dict("records"):
        record: dict[str, Any] = {}
        for name, value in row.items():
            if isinstance(value, datetime | pd.Timestamp):
                value = iso(_moment(value))
            elif value is None or (isinstance(value, float) and math.isnan(value)):
                value = None
            elif isinstance(value, float):
                value = round(value, 4)
            elif hasattr(value, "item"):  # numpy scalars
                value = value.item()
            record[name] = value
        records.append(record)
    return records


# ---------------------------------------------------------------------------------------------
# What the customer is told


@dataclass(frozen=True)
class Queues:
    """The open tickets' places, per team, and the teams' recent first-response times: what a
    newly scored ticket's expected first response is computed from (`expected_first_response`)."""

    levels: tuple[str, ...]
    # team -> {ticket id: order_key} of its open tickets
    keys: Mapping[str, Mapping[str, tuple[int, float, float]]]
    response_hours: Mapping[str, float]
    default_response_hours: float
    agents: Mapping[str, int]
    # team -> its open tickets' keys, sorted (a bisection per scored ticket, not a scan)
    ordered: Mapping[str, list[tuple[int, float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.ordered:
            object.__setattr__(
                self, "ordered", {team: sorted(keys.values()) for team, keys in self.keys.items()}
            )

    def ahead(self, team: str, ticket_id: str, key: tuple[int, float, float]) -> int:
        """The team's open tickets before `key` in the queue (the ticket itself not counted);
        one with the same key was there first, so it is ahead too."""
        count = bisect_right(self.ordered.get(team, []), key)
        own = self.keys.get(team, {}).get(ticket_id)
        return count - (1 if own is not None and own <= key else 0)

    def response(self, team: str) -> tuple[float, str]:
        """The team's median first-response hours and where it came from (history / default)."""
        if team in self.response_hours:
            return self.response_hours[team], "history"
        return self.default_response_hours, "default"


def queues(
    open_tickets: pd.DataFrame,
    recent: pd.DataFrame,
    *,
    levels: Sequence[str],
    now: datetime,
    agents: Mapping[str, int],
    window_days: int,
    default_response_hours: float,
) -> Queues:
    keys: dict[str, dict[str, tuple[int, float, float]]] = {}
    for raw in open_tickets.to_dict("records") if len(open_tickets) else []:
        ticket = {name: _value(value) for name, value in raw.items()}
        team = ticket.get("state_team") or ticket.get("team")
        answered = _moment(ticket.get("first_response_at")) is not None
        _, due = _nearest_unmet(
            _moment(ticket.get("first_response_due")), _moment(ticket.get("resolution_due")), answered
        )
        created = _moment(ticket.get("created_at")) or _moment(ticket.get("opened_at"))
        keys.setdefault(team, {})[ticket["ticket_id"]] = order_key(
            rank_of(levels, ticket.get("priority")), due, created
        )
    _handling, response = team_medians(recent, now=now, window_days=window_days)
    return Queues(tuple(levels), keys, response, default_response_hours, dict(agents))


@dataclass(frozen=True)
class ExpectedResponse:
    at: datetime  # when the first answer is expected (UTC)
    hours: float  # from now
    queue_ahead: int
    median_response_hours: float
    response_from: str  # "history" (the team's recent tickets) or "default" (params)
    agents: int
    at_risk: bool  # expected after the first-response deadline
    sentence: str  # what the customer reads


def expected_first_response(
    *,
    now: datetime,
    first_response_due: datetime | None,
    queue_ahead: int,
    median_response_hours: float,
    agents: int,
    response_from: str = "history",
) -> ExpectedResponse:
    """now + `breach_risk.expected_wait_hours`(queue ahead, median first response, agents): the
    time the queue says, also when it is later than the deadline (then `at_risk`) - never a
    promise the queue cannot keep."""
    hours = expected_wait_hours(queue_ahead, median_response_hours, agents)
    at = (now + timedelta(hours=hours)).astimezone(UTC).replace(microsecond=0)
    due = _moment(first_response_due)
    return ExpectedResponse(
        at=at,
        hours=hours,
        queue_ahead=queue_ahead,
        median_response_hours=median_response_hours,
        response_from=response_from,
        agents=agents,
        at_risk=due is not None and at > due,
        sentence=customer_sentence(at, now),
    )


def _rounded_hours(hours: float) -> str:
    if hours < 1:
        minutes = max(5, math.ceil(hours * 60 / 5) * 5)
        return "1 hour" if minutes >= 60 else f"{minutes} minutes"
    if hours < 48:
        whole = math.ceil(hours)
        return "1 hour" if whole == 1 else f"{whole} hours"
    return f"{math.ceil(hours / 24)} days"


def customer_sentence(at: datetime, now: datetime) -> str:
    """The expected first response for a customer: how long, and the time in UTC (the service
    does not know the customer's time zone; a helpdesk template can show its own)."""
    hours = max((at - now).total_seconds() / 3600, 0.0)
    when = at.astimezone(UTC)
    return (
        f"We expect to reply within about {_rounded_hours(hours)} "
        f"(by {when:%H:%M} UTC on {when.day} {when:%B %Y})."
    )


# ---------------------------------------------------------------------------------------------
# From the store (the service's route and `urgency report backlog`)


def read_backlog(
    store: Store,
    *,
    levels: Sequence[str],
    operations: OperationsParams,
    now: datetime,
    breach_model: Any = None,
    agents: Agents | None = None,
) -> pd.DataFrame:
    """`build_backlog` over the store's open tickets and its recent closed ones, with the
    params' window and defaults and the agents (`urgency.agents`; None: one per team)."""
    return build_backlog(
        store.open_tickets(),
        store.recent_times(now - timedelta(days=operations.recent_days)),
        levels=levels,
        now=now,
        agents=team_agents(agents),
        window_days=operations.recent_days,
        default_handling_hours=operations.default_handling_hours,
        breach_model=breach_model,
    )


def filtered(backlog: pd.DataFrame, *, team: str | None = None, priority: str | None = None) -> pd.DataFrame:
    keep = [True] * len(backlog)
    if team is not None:
        keep = [k and t == team for k, t in zip(keep, backlog["team"], strict=True)]
    if priority is not None:
        keep = [k and p == priority for k, p in zip(keep, backlog["priority"], strict=True)]
    return backlog[keep].reset_index(drop=True)


def backlog_json(backlog: pd.DataFrame, *, now: datetime, limit: int | None = None) -> dict[str, Any]:
    """The backlog as the service answers it and `urgency report backlog` writes it: when, the
    summary, the open tickets (the first `limit`), whether a breach model gave its risk."""
    records = backlog_records(backlog)
    return {
        "generated_at": iso(now),
        "open_tickets": len(records),
        "breach_model": bool(len(backlog) and backlog["breach_risk_model"].notna().any()),
        "summary": summarise(backlog),
        "tickets": records if limit is None else records[:limit],
    }

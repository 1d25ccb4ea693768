"""Simulated operations for the demo: agents, assignments and reassignments, CSAT, open tickets.

`urgency demo-agents` gives closed tickets whose agents' values are held-back labels; this
module plays the rest of a support operation on them (seeded, so the same seed gives the same
files), for `urgency report operations`:
- agents: those of the agents file (params `operations.agents`, `roster`) for the teams it names;
  for any other team a few (two, plus up to six more by the team's share of tickets), named
  `<team>-<n>`;
- open tickets: the tickets created in the last `open_days` days before `now` that were not yet
  resolved by then (their response time dropped too when it lies after `now`); the others are
  closed;
- assignments: each ticket first goes to the team the rules routed it to, then moves as often as
  a ServiceNow incident did (`reassignment_pattern`, from the real incident log's
  `reassignment_count` and `assignment_group` changes): a move changes team in the log's share of
  moves, goes back to the team before in the log's share of team changes, and the last move
  reaches the team the agents gave the ticket (a ticket the rules routed elsewhere moves at least
  once); agents picked at random within a team; times spread between creation and resolution;
- CSAT: a score from 1 to 5 for `csat_share` of the resolved tickets (25%: a common response
  rate), higher when the resolution met its deadline and lower for each move;
- model versions: the versions given (the champions that scored the demo), on every ticket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from urgency.incidents import final_states
from urgency.operations import versions_text

# The probability of CSAT scores 1..5, when the resolution met its deadline and when it did not.
CSAT_MET = (0.04, 0.04, 0.10, 0.30, 0.52)
CSAT_MISSED = (0.20, 0.15, 0.20, 0.25, 0.20)
# Each move makes a customer one point less happy with this probability.
CSAT_MOVE_PENALTY = 0.3
OPEN_STATUSES = {"new": 0.3, "open": 0.5, "pending": 0.2}


@dataclass(frozen=True)
class ReassignmentPattern:
    """How often tickets move, from a ServiceNow incident log: the share of incidents by
    reassignment count (the last at `cap` meaning `cap` or more), the share of moves that change
    team (assignment group), and the share of team changes that go back to the team before."""

    counts: Mapping[int, float]
    team_move_share: float
    bounce_back_share: float
    incidents: int

    @property
    def rate(self) -> float:
        return 1.0 - self.counts.get(0, 0.0)


def reassignment_pattern(events: pd.DataFrame, cap: int = 5) -> ReassignmentPattern:
    """The pattern of a ServiceNow event log (`incidents.read_incident_log`: one row per update,
    in order; `reassignment_count` on the incident's last row; `assignment_group` per row, "?"
    unknown)."""
    final = final_states(events)
    count = pd.to_numeric(final["reassignment_count"], errors="coerce").dropna().clip(upper=cap).astype(int)
    counts = {int(n): float(share) for n, share in count.value_counts(normalize=True).sort_index().items()}
    known = events[events["assignment_group"].str.strip().isin(["", "?"]) == False]  # noqa: E712
    previous = known.groupby("number", sort=False)["assignment_group"].shift()
    # The groups each incident passed through, repeats collapsed.
    steps = known[previous.isna() | (known["assignment_group"] != previous)]
    before = steps.groupby("number", sort=False)["assignment_group"].shift(1)
    two_back = steps.groupby("number", sort=False)["assignment_group"].shift(2)
    changes = int(before.notna().sum())
    back = int((two_back.notna() & (steps["assignment_group"] == two_back)).sum())
    moves = int(pd.to_numeric(final["reassignment_count"], errors="coerce").fillna(0).sum())
    return ReassignmentPattern(
        counts=counts,
        team_move_share=min(1.0, changes / moves) if moves else 0.0,
        bounce_back_share=back / changes if changes else 0.0,
        incidents=len(final),
    )


def demo_agents(teams: Mapping[str, int], *, base: int = 2, extra: int = 6) -> dict[str, list[str]]:
    """Agents per team: `base` each plus up to `extra` by the team's share of tickets."""
    total = max(sum(teams.values()), 1)
    return {
        team: [f"{team}-{n + 1}" for n in range(base + round(extra * tickets / total))]
        for team, tickets in teams.items()
    }


def _times(values: pd.Series) -> pd.Series:
    text = values.astype(object).where(values.notna() & (values.astype(str).str.strip() != ""), None)
    return pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")


def _stamp(moments: pd.Series) -> pd.Series:
    return moments.dt.strftime("%Y-%m-%dT%H:%M:%SZ").where(moments.notna(), "")


def _chain(
    rng: np.random.Generator,
    first_team: str,
    final_team: str,
    final_agent: str,
    moves: int,
    agents: Mapping[str, Sequence[str]],
    pattern: ReassignmentPattern,
    weights: Mapping[str, float],
) -> list[tuple[str, str]]:
    """The (team, agent) a ticket passes through: first the rules' team, `moves` moves, the last
    one to the final team and agent; no move leaves a ticket where it was."""
    if moves == 0:
        return [(final_team, final_agent)]
    teams = [first_team]
    for _ in range(moves - 1):
        current = teams[-1]
        if rng.random() < pattern.team_move_share:
            if len(teams) >= 2 and teams[-2] != current and rng.random() < pattern.bounce_back_share:
                teams.append(teams[-2])
            else:
                others = [team for team in weights if team != current]
                share = np.array([weights[team] for team in others], dtype=float)
                teams.append(str(rng.choice(others, p=share / share.sum())) if others else current)
        else:
            teams.append(current)
    teams.append(final_team)
    people = [str(rng.choice(agents[team])) for team in teams[:-1]] + [final_agent]
    for index in range(len(teams) - 2, -1, -1):  # a move to the same agent is no move
        if teams[index] == teams[index + 1] and people[index] == people[index + 1]:
            choices = [agent for agent in agents[teams[index]] if agent != people[index + 1]]
            people[index] = str(rng.choice(choices)) if choices else people[index]
    return list(zip(teams, people, strict=True))


def simulate_operations(
    closed: pd.DataFrame,
    pattern: ReassignmentPattern,
    *,
    now: datetime,
    teams: Sequence[str] = (),
    model_versions: Mapping[str, str] | None = None,
    roster: Mapping[str, Sequence[str]] | None = None,
    open_days: float = 3.0,
    csat_share: float = 0.25,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """From a closed-tickets CSV as read (text cells, `urgency demo-agents`): the closed tickets
    with `agent`, `csat`, `reassignments`, `status`, `model_versions`; the open tickets (the
    backlog's columns); the assignments (the store's `assignments` columns); the agents.
    `roster`: team -> agent ids (the agents file's); a team it does not name gets `demo_agents`."""
    rng = np.random.default_rng(seed)
    frame = closed.copy().reset_index(drop=True).replace({np.nan: None})
    moment = pd.Timestamp(now)
    created = _times(frame["created_at"])
    responded = _times(frame["first_response_at"])
    resolved = _times(frame["resolved_at"])
    is_open = (created >= moment - pd.Timedelta(days=open_days)) & (resolved.isna() | (resolved > moment))
    rules_team = frame["team"].fillna("").astype(str)
    final_team = frame["agent_team"].where(frame["agent_team"].notna(), frame["team"]).fillna("").astype(str)
    volume = final_team.value_counts()
    weights = {
        team: float(volume.get(team, 0)) + 1.0 for team in sorted({*teams, *final_team, *rules_team} - {""})
    }
    agents = demo_agents({team: int(volume.get(team, 0)) for team in weights})
    # The agents file's agents where it names some for a team (an agent of two teams in both).
    agents.update({team: list(names) for team, names in (roster or {}).items() if names and team in agents})
    priority = frame["agent_priority"].where(frame["agent_priority"].notna(), frame["priority"])
    choices = list(pattern.counts)
    shares = np.array([pattern.counts[n] for n in choices])
    rows: list[dict[str, Any]] = []
    final_agents, move_counts = [], []
    for index in frame.index:
        team = final_team[index]
        agent = str(rng.choice(agents[team]))
        moves = int(rng.choice(choices, p=shares / shares.sum()))
        if rules_team[index] and rules_team[index] != team:
            moves = max(moves, 1)  # routed elsewhere: someone moved it
        chain = _chain(rng, rules_team[index] or team, team, agent, moves, agents, pattern, weights)
        start = created[index] + pd.Timedelta(minutes=float(rng.exponential(5.0)))
        end = moment if is_open[index] else resolved[index]
        if pd.isna(end) or end <= start:
            end = start + pd.Timedelta(hours=24)
        offsets = np.sort(rng.uniform(0, (end - start).total_seconds(), len(chain) - 1))
        times = [start, *(start + pd.Timedelta(seconds=float(s)) for s in offsets)]
        for step, ((step_team, step_agent), at) in enumerate(zip(chain, times, strict=True)):
            previous = chain[step - 1] if step else (None, None)
            rows.append(
                {
                    "ticket_id": frame.at[index, "ticket_id"],
                    "assigned_at": at.round("s"),
                    "agent": step_agent,
                    "team": step_team,
                    "priority": priority[index],
                    "strategy": "least-loaded" if step == 0 else "agent",
                    "reassignment": step > 0,
                    "previous_agent": previous[1],
                    "previous_team": previous[0],
                    "source": "simulation",
                    "explanation": "simulated for the demo" if step == 0 else "moved by an agent (simulated)",
                }
            )
        final_agents.append(agent)
        move_counts.append(len(chain) - 1)
    frame["agent"] = final_agents
    frame["reassignments"] = move_counts
    frame["model_versions"] = versions_text(model_versions or {})
    # CSAT: a share of the resolved tickets, scored by whether the deadline held and the moves.
    due = _times(frame["resolution_due"])
    met = (resolved <= due).fillna(True).to_numpy()
    answered = (rng.random(len(frame)) < csat_share) & resolved.notna().to_numpy() & ~is_open.to_numpy()
    base = np.where(
        met, rng.choice(5, len(frame), p=CSAT_MET) + 1, rng.choice(5, len(frame), p=CSAT_MISSED) + 1
    )
    penalty = rng.binomial(np.asarray(move_counts), CSAT_MOVE_PENALTY)
    # On the store's scale (0..1): a score s of 5 is (s - 1) / 4.
    frame["csat"] = ((pd.Series(np.clip(base - penalty, 1, 5), dtype=float) - 1) / 4).where(answered)
    frame["status"] = "closed"
    assignments = pd.DataFrame(rows)
    assignments["assigned_at"] = _stamp(assignments["assigned_at"])
    # The open tickets: as of `now`, nothing resolved yet, a response only if it came by then.
    backlog = frame[is_open].copy()
    backlog["status"] = rng.choice(list(OPEN_STATUSES), len(backlog), p=list(OPEN_STATUSES.values()))
    backlog["first_response_at"] = _stamp(responded[is_open].where(responded[is_open] <= moment))
    backlog["assignee"] = backlog["agent"]
    backlog["team"] = final_team[is_open]
    backlog["priority"] = priority[is_open]
    open_columns = [
        "ticket_id", "created_at", "status", "priority", "team", "assignee", "first_response_due",
        "resolution_due", "first_response_at", "category", "plan", "channel", "language",
    ]  # fmt: skip
    agent_rows = pd.DataFrame(
        [{"agent": name, "team": team} for team, names in agents.items() for name in names]
    )
    return {
        "closed": frame[~is_open].reset_index(drop=True),
        "open": backlog.reindex(columns=open_columns).reset_index(drop=True),
        "assignments": assignments,
        "agents": agent_rows,
    }

"""Assignment: who can take a ticket, how each strategy chooses, and the properties that must hold
whatever the tickets, agents and loads."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.rules_helpers import make_rules
from urgency.agents import Agents, parse_agents
from urgency.assignment import (
    STRATEGIES,
    Availability,
    TicketToAssign,
    assign,
    assign_frame,
    open_count,
    priority_weights,
    skip_reason,
    weighted_load,
)
from urgency.errors import DataValidationError, InputError

RULES = make_rules()
LEVELS = RULES.levels
MONDAY_10_BERLIN = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 10:00 in Berlin, 04:00 in New York


def make_agents(*agents: dict[str, Any]) -> Agents:
    return parse_agents(yaml.safe_dump({"agents": list(agents)}), RULES, "agents.yaml")


def agent(agent_id: str, **fields: Any) -> dict[str, Any]:
    defaults = {
        "team": "desk",
        "calendar": "always",
        "max_open": 10,
        "languages": ["en"],
        "skills": ["general"],
    }
    return {"id": agent_id, **defaults, **fields}


def ticket(ticket_id: str, priority: str = "P3", team: str = "desk", **fields: Any) -> TicketToAssign:
    rank = LEVELS.index(priority)
    return TicketToAssign(
        ticket_id=ticket_id, priority=priority, order_key=fields.pop("order_key", f"{rank:02d}|{ticket_id}"),
        team=team, **fields,
    )  # fmt: skip


def run(tickets: list[TicketToAssign], agents: Agents, strategy: str = "least-loaded", **options: Any) -> Any:
    options.setdefault("now", MONDAY_10_BERLIN)
    return assign(tickets, agents, options.pop("load", {}), strategy=strategy, levels=LEVELS, **options)


# ---------------------------------------------------------------------------------------------
# Who can take a ticket


def test_the_weights_count_the_most_urgent_level_most() -> None:
    assert priority_weights(LEVELS) == {"P1": 4, "P2": 3, "P3": 2, "P4": 1}
    assert weighted_load({"P1": 2, "P4": 1, "odd": 1}, priority_weights(LEVELS)) == 10


def test_each_reason_an_agent_is_skipped_is_said() -> None:
    agents = make_agents(
        agent("off"),
        agent("asleep", calendar="new-york"),
        agent("full", max_open=2),
        agent("no-skill", skills=[]),
        agent("english", languages=["en"]),
        agent("fits", languages=["en", "de"], skills=["general", "hardware"]),
    )
    one = ticket("T-1", skills=("hardware",), language="de-DE")
    availability = {"off": Availability(False, "zendesk")}
    reasons = {
        a.id: skip_reason(
            a, one, {"P3": 2} if a.id == "full" else {}, availability.get(a.id), MONDAY_10_BERLIN
        )
        for a in agents.agents
    }
    assert reasons == {
        "off": "switched off (zendesk)",
        "asleep": "outside working hours (new-york)",
        "full": "at capacity (2/2 open)",
        "no-skill": "lacks skill hardware",
        "english": "lacks skill hardware",
        "fits": None,
    }
    assert skip_reason(agents.by_id["english"], ticket("T-2", language="de"), {}, None, MONDAY_10_BERLIN) == (
        "does not speak de"
    )


def test_a_skill_that_is_a_language_is_met_by_speaking_it() -> None:
    # The rules route German hardware tickets with `skills: [hardware, de]`.
    agents = make_agents(
        agent("felix", team="hardware-de", skills=["hardware"], languages=["en", "de"]),
        agent("claire", team="hardware-de", skills=["hardware"], languages=["en", "fr"]),
    )
    result = run([ticket("T-1", team="hardware-de", skills=("hardware", "de"))], agents)
    assert result.assignments[0].agent == "felix"
    assert "claire (lacks skill de)" in result.assignments[0].explanation


def test_a_ticket_no_agent_can_take_waits_in_its_team_queue_with_the_reason() -> None:
    agents = make_agents(
        agent("maria", calendar="new-york"), agent("jan", team="hardware-en", skills=["hardware"])
    )
    waiting = run([ticket("T-1")], agents).assignments[0]
    assert waiting.agent is None
    assert waiting.reason == "no agent of team desk can take it now"
    assert waiting.explanation == (
        "least-loaded: no agent of team desk can take it now, it waits in the team's queue; "
        "skipped: maria (outside working hours (new-york))"
    )
    nobody = run([ticket("T-2", team="triage", skills=())], agents).assignments[0]
    assert nobody.agent is None and nobody.reason == "team triage has no agents in the agents file"


# ---------------------------------------------------------------------------------------------
# The strategies


def test_least_loaded_weighs_open_tickets_by_priority_and_divides_by_weight() -> None:
    agents = make_agents(agent("ana"), agent("ben"), agent("cem", weight=2))
    load = {"ana": {"P1": 1}, "ben": {"P4": 3}, "cem": {"P1": 1, "P2": 1}}  # 4, 3, 7/2 = 3.5
    result = run([ticket("T-1")], agents, load=load)
    assert result.assignments[0].agent == "ben"
    assert result.assignments[0].explanation == (
        "least-loaded: ben (load 3: 3 open), least loaded (open tickets weighted by priority, divided "
        "by weight) over ana (load 4: 1 open), cem (load 3.5: 2 open, weight 2)"
    )
    assert result.load["ben"] == {"P4": 3, "P3": 1}


def test_capacity_aware_takes_the_lowest_share_of_max_open() -> None:
    agents = make_agents(agent("ana", max_open=10), agent("ben", max_open=4))
    result = run([ticket("T-1")], agents, "capacity-aware", load={"ana": {"P3": 4}, "ben": {"P3": 2}})
    assert result.assignments[0].agent == "ana"  # 4/10 < 2/4
    assert result.assignments[0].explanation.startswith("capacity-aware: ana (4/10 open), lowest share")


def test_round_robin_goes_in_file_order_after_the_last_agent_of_the_team() -> None:
    agents = make_agents(agent("cem"), agent("ana"), agent("ben"))
    tickets = [ticket(f"T-{i}") for i in range(4)]
    fresh = run(tickets, agents, "round-robin")
    assert [a.agent for a in fresh.assignments] == ["cem", "ana", "ben", "cem"]
    assert fresh.last_by_team == {"desk": "cem"}
    after_ana = run(tickets[:2], agents, "round-robin", last_by_team={"desk": "ana"})
    assert [a.agent for a in after_ana.assignments] == ["ben", "cem"]
    assert after_ana.assignments[0].explanation.startswith(
        "round-robin: ben (0/10 open), next in turn after ana"
    )
    # An agent who cannot take it is passed over: the turn goes on to the next.
    skipping = run(tickets[:1], agents, "round-robin", last_by_team={"desk": "cem"},
                   availability={"ana": Availability(False)})  # fmt: skip
    assert skipping.assignments[0].agent == "ben"


def test_the_most_urgent_ticket_gets_the_last_free_place() -> None:
    agents = make_agents(agent("ana", max_open=1))
    tickets = [ticket("T-low", "P4"), ticket("T-urgent", "P1"), ticket("T-mid", "P2")]
    result = run(tickets, agents)
    assert [a.ticket_id for a in result.assignments] == ["T-low", "T-urgent", "T-mid"]  # input order
    assert [a.agent for a in result.assignments] == [None, "ana", None]
    assert "ana (at capacity (1/1 open))" in result.assignments[0].explanation


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown assignment strategy 'random'"):
        run([ticket("T-1")], make_agents(agent("ana")), "random")


def test_a_scored_queue_gets_an_assignee_and_why() -> None:
    agents = make_agents(agent("ana", languages=["en", "de"]), agent("ben"))
    queue = pd.DataFrame(
        {
            "id": ["T-1", "T-2", "T-3"],
            "priority": ["P2", "P1", "P3"],
            "order_key": ["01|x", "00|x", "02|x"],
            "team": ["desk", "desk", "triage"],
            "skills": ["general", None, ""],
            "language": ["de", None, "en"],
            "subject": ["a", "b", "c"],
        }
    )
    teams = ["desk", "triage"]
    assigned, _ = assign_frame(
        queue, agents, {}, now=MONDAY_10_BERLIN, strategy="least-loaded", levels=LEVELS, teams=teams
    )
    assert list(assigned.columns) == [*queue.columns, "assignee", "assignment_explanation"]
    # T-2 (P1) first: ana; T-1 needs German: ana again; triage has nobody (missing).
    assert list(assigned["assignee"].fillna("-")) == ["ana", "ana", "-"]
    assert assigned["assignment_explanation"][2].startswith("least-loaded: team triage has no agents")
    with pytest.raises(InputError, match="lacks the column"):
        assign_frame(queue.drop(columns="team"), agents, {}, now=MONDAY_10_BERLIN, strategy="round-robin",
                     levels=LEVELS, teams=teams)  # fmt: skip
    # Rows the rules do not know, or a ticket twice: refused, each named by row and column.
    bad = pd.concat([queue, queue.iloc[[0]]], ignore_index=True)
    bad.loc[1, "priority"], bad.loc[2, "team"] = "P9", "sales"
    with pytest.raises(DataValidationError) as error:
        assign_frame(bad, agents, {}, now=MONDAY_10_BERLIN, strategy="round-robin", levels=LEVELS,
                     teams=teams, source="queue.csv")  # fmt: skip
    message = str(error.value)
    assert message.startswith("queue.csv: row 2, column priority: 'P9' is not one of")
    assert "row 3, column team: 'sales' is not a team of the rules" in message
    assert "row 4, column id: 'T-1' is also row 1" in message


# ---------------------------------------------------------------------------------------------
# Properties

TEAMS = ("desk", "hardware-en", "hardware-de")
SKILLS = ("general", "hardware")
LANGUAGES = ("en", "de", "fr")


@st.composite
def agents_files(draw: st.DrawFn) -> Agents:
    count = draw(st.integers(1, 6))
    agents = []
    for number in range(count):
        agents.append(
            {
                "id": f"a{number}",
                "teams": draw(st.lists(st.sampled_from(TEAMS), min_size=1, max_size=3, unique=True)),
                "skills": draw(st.lists(st.sampled_from(SKILLS), max_size=2, unique=True)),
                "languages": draw(st.lists(st.sampled_from(LANGUAGES), max_size=3, unique=True)),
                "calendar": draw(st.sampled_from(["berlin", "new-york", "always"])),
                "max_open": draw(st.integers(1, 4)),
                "weight": draw(st.sampled_from([0.5, 1, 2])),
            }
        )
    return make_agents(*agents)


@st.composite
def cases(draw: st.DrawFn) -> dict[str, Any]:
    agents = draw(agents_files())
    tickets = [
        ticket(
            f"T-{number}",
            draw(st.sampled_from(LEVELS)),
            draw(st.sampled_from(TEAMS)),
            skills=tuple(draw(st.lists(st.sampled_from((*SKILLS, "de")), max_size=2, unique=True))),
            language=draw(st.none() | st.sampled_from(LANGUAGES)),
        )
        for number in range(draw(st.integers(0, 25)))
    ]
    load = {
        a.id: {draw(st.sampled_from(LEVELS)): draw(st.integers(0, a.max_open))}
        for a in agents.agents
        if draw(st.booleans())
    }
    availability = {a.id: Availability(draw(st.booleans())) for a in agents.agents if draw(st.booleans())}
    now = MONDAY_10_BERLIN + timedelta(hours=draw(st.integers(0, 24 * 7)))
    return {"agents": agents, "tickets": tickets, "load": load, "availability": availability, "now": now,
            "strategy": draw(st.sampled_from(STRATEGIES))}  # fmt: skip


def _run(case: dict[str, Any], tickets: list[TicketToAssign] | None = None) -> Any:
    return assign(
        case["tickets"] if tickets is None else tickets,
        case["agents"],
        case["load"],
        now=case["now"],
        strategy=case["strategy"],
        levels=LEVELS,
        availability=case["availability"],
    )


@settings(max_examples=150, deadline=None)
@given(cases())
def test_every_assignment_respects_capacity_hours_availability_team_skills_and_language(
    case: dict[str, Any],
) -> None:
    result = _run(case)
    agents: Agents = case["agents"]
    for one, asked in zip(result.assignments, case["tickets"], strict=True):
        assert one.ticket_id == asked.ticket_id and one.team == asked.team
        if one.agent is None:
            # Nobody could: every agent of the team has a reason, even with the final load (loads
            # only grow, and the other reasons do not change within a run).
            for member in agents.of_team(asked.team):
                counts = result.load.get(member.id, {})
                availability = case["availability"].get(member.id)
                assert skip_reason(member, asked, counts, availability, case["now"]) is not None
            continue
        chosen = agents.by_id[one.agent]
        assert asked.team in chosen.teams
        assert chosen.working(case["now"])  # never outside working hours
        assert case["availability"].get(chosen.id, Availability(True)).available
        assert all(skill in chosen.skills or skill in chosen.languages for skill in asked.skills)
        assert asked.language is None or asked.language in chosen.languages
    for member in agents.agents:
        before = open_count(case["load"].get(member.id, {}))
        assert open_count(result.load.get(member.id, {})) <= max(member.max_open, before)  # never over
    added = Counter(one.agent for one in result.assignments if one.agent is not None)
    for member, count in added.items():
        assert open_count(result.load[member]) == open_count(case["load"].get(member, {})) + count


@settings(max_examples=60, deadline=None)
@given(cases(), st.randoms(use_true_random=False))
def test_the_same_input_gives_the_same_output_in_any_order(case: dict[str, Any], random: Any) -> None:
    first, again = _run(case), _run(case)
    assert first == again
    shuffled = list(case["tickets"])
    random.shuffle(shuffled)
    by_ticket = {one.ticket_id: one for one in _run(case, shuffled).assignments}
    assert all(by_ticket[one.ticket_id] == one for one in first.assignments)


@settings(max_examples=80, deadline=None)
@given(
    agents=st.integers(1, 6),
    tickets=st.integers(0, 40),
    priority=st.sampled_from(LEVELS),
    strategy=st.sampled_from(STRATEGIES),
    last=st.integers(0, 5),
)
def test_equal_agents_end_within_one_ticket_of_each_other(
    agents: int, tickets: int, priority: str, strategy: str, last: int
) -> None:
    team = make_agents(*(agent(f"a{n}", max_open=100) for n in range(agents)))
    result = run(
        [ticket(f"T-{n:03d}", priority) for n in range(tickets)],
        team,
        strategy,
        last_by_team={"desk": f"a{last % agents}"},
    )
    counts = [open_count(result.load.get(f"a{n}", {})) for n in range(agents)]
    assert sum(counts) == tickets and max(counts) - min(counts) <= 1


@settings(max_examples=60, deadline=None)
@given(priorities=st.lists(st.sampled_from(LEVELS), max_size=40), agents=st.integers(1, 5))
def test_least_loaded_spreads_weighted_load_within_one_ticket_of_even(
    priorities: list[str], agents: int
) -> None:
    team = make_agents(*(agent(f"a{n}", max_open=100) for n in range(agents)))
    result = run([ticket(f"T-{n:03d}", p) for n, p in enumerate(priorities)], team)
    weights = priority_weights(LEVELS)
    loads = [weighted_load(result.load.get(f"a{n}", {}), weights) for n in range(agents)]
    assert max(loads) - min(loads) <= max(weights.values())


# ---------------------------------------------------------------------------------------------
# A probable duplicate goes to the agent of the ticket it duplicates (rules `duplicates.same_agent`)


@pytest.mark.parametrize("strategy", ["round-robin", "least-loaded", "capacity-aware"])
def test_a_duplicate_goes_to_the_agent_of_its_original_when_they_can_take_it(strategy: str) -> None:
    agents = make_agents(agent("ana"), agent("ben", max_open=2))
    # ben has more load: every strategy alone would choose ana.
    load = {"ben": {"P3": 1}}
    [one] = run(
        [ticket("T-2", duplicate_of="T-1", duplicate_agent="ben")], agents, strategy, load=load
    ).assignments
    assert one.agent == "ben"
    assert "the agent of T-1, which it probably duplicates" in one.explanation
    # ben is full: the strategy chooses as usual, and says nothing of the original.
    full = {"ben": {"P3": 2}}
    [other] = run(
        [ticket("T-2", duplicate_of="T-1", duplicate_agent="ben")], agents, strategy, load=full
    ).assignments
    assert other.agent == "ana" and "T-1" not in other.explanation
    assert [who for who, _why in other.skipped] == ["ben"]

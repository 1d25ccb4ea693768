"""The agents file: its shape, its checks against the rules, and reading it again when it changes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.rules_helpers import make_rules
from urgency.agents import AgentsWatch, parse_agents, read_agents
from urgency.errors import ParamsError

RULES = make_rules()


def agent(agent_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": agent_id, "team": "desk", "calendar": "berlin", "max_open": 5, **fields}


def parse(*agents: dict[str, Any], **top: Any) -> Any:
    return parse_agents(yaml.safe_dump({"agents": list(agents), **top}), RULES, "agents.yaml")


def problems(*agents: dict[str, Any], **top: Any) -> str:
    with pytest.raises(ParamsError) as error:
        parse(*agents, **top)
    return str(error.value)


def test_an_agent_is_read_with_its_defaults_and_checked_calendar() -> None:
    agents = parse(
        agent("maria", skills=["general"], languages=["EN", "de-DE"], helpdesk_ids={"zendesk": 361234}),
        agent("jan", teams=["desk", "hardware-de"], team=None, weight=2),
    )
    maria, jan = agents.agents
    assert maria.teams == ("desk",) and maria.weight == 1 and maria.name == "maria"
    assert maria.languages == {"en", "de"}  # normalised as the rules normalise a ticket's language
    assert maria.calendar is RULES.calendars["berlin"]
    assert maria.helpdesk_ids == {"zendesk": "361234"}  # a YAML number is an id as text
    assert jan.teams == ("desk", "hardware-de") and jan.weight == 2
    assert [a.id for a in agents.of_team("hardware-de")] == ["jan"]
    assert agents.agent_id("361234", "zendesk") == "maria"
    assert agents.agent_id("MARIA") == "maria" and agents.agent_id("nobody") is None


@pytest.mark.parametrize(
    ("agents", "message"),
    [
        ([agent("a", team="sales")], "agents.0 (a).team: 'sales' is not a team of the rules"),
        ([agent("a", calendar="tokyo")], "agents.0 (a).calendar: 'tokyo' is not a calendar of the rules"),
        ([agent("a", skills=["cooking"])], "agents.0 (a).skills: 'cooking' is not a skill the rules name"),
        ([agent("a"), agent("a")], "agents.1 (a).id: 'a' is used by an earlier agent"),
        ([agent("a", max_open=0)], "agents.0 (a).max_open: Input should be greater than or equal to 1"),
        ([agent("a", weight=0)], "agents.0 (a).weight: Input should be greater than or equal to 0.01"),
        ([agent("a", weight=float("inf"))], "agents.0 (a).weight: Input should be less than or equal to 100"),
        ([agent("Oliver"), agent("oliver")], "agents.1 (oliver).id: 'oliver' is used by an earlier agent"),
        ([agent("a", mood="happy")], "agents.0 (a).mood: unknown key"),
        ([agent("a", teams=["desk"])], "agents.0 (a): Value error, give `team` (one) or `teams`"),
        ([{"id": "a", "team": "desk", "calendar": "berlin"}], "agents.0 (a).max_open: Field required"),
        (
            [agent("a", helpdesk_ids={"zendesk": "7"}), agent("b", helpdesk_ids={"zendesk": "7"})],
            "agents.1 (b).helpdesk_ids.zendesk: '7' is also agent 'a''s",
        ),
        ([agent("a b")], "agents.0 (a b).id: String should match pattern"),
    ],
)
def test_a_wrong_agent_is_named_with_the_file_and_field(agents: list[dict[str, Any]], message: str) -> None:
    text = problems(*agents)
    assert text.startswith("agents.yaml: ") and message in text


def test_every_problem_is_reported_at_once() -> None:
    text = problems(agent("a", team="sales"), agent("b", calendar="tokyo"))
    assert "2 problem(s)" in text and "sales" in text and "tokyo" in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("agents: [", "agents.yaml: not valid YAML"),
        ("- a\n- b\n", "expected a mapping with an `agents` list"),
        ("agents: []\n", "agents: List should have at least 1 item"),
        ("version: 2\nagents: []\n", "version: Input should be 1"),
    ],
)
def test_a_broken_file_says_why(content: str, message: str) -> None:
    with pytest.raises(ParamsError, match=message):
        parse_agents(content, RULES, "agents.yaml")


def test_nested_aliases_are_refused_before_they_expand() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    with pytest.raises(ParamsError, match="more than"):
        parse_agents("\n".join(lines) + "\nagents: *a11\n", RULES, "agents.yaml")


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match=r"agents file not found: .*nope\.yaml"):
        read_agents(tmp_path / "nope.yaml", RULES)


def test_the_demo_agents_file_fits_the_demo_rules() -> None:
    from urgency.config import load_params
    from urgency.rules import load_rules

    root = Path(__file__).resolve().parents[1]
    params = load_params(root / "params.yaml")
    rules = load_rules(params.scoring.rules, category_labels=params.heads.category_labels)
    assert params.operations.agents == root / "agents.yaml"
    agents = read_agents(params.operations.agents, rules)
    for team in rules.spec.teams:
        assert len(agents.of_team(team.name)) >= 2, team.name
    assert {language for a in agents.agents for language in a.languages} >= {"en", "de", "es", "fr"}
    assert {a.calendar_name for a in agents.agents} == {"berlin", "new-york"}


def _write(path: Path, *agents: dict[str, Any], mtime: int | None = None) -> None:
    path.write_text(yaml.safe_dump({"agents": list(agents)}))
    if mtime is not None:  # a new time for each change: a coarse file system clock sees one
        os.utime(path, ns=(mtime, mtime))


def test_the_watch_reads_a_changed_file_and_keeps_the_old_agents_when_it_breaks(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    _write(path, agent("maria"), mtime=1_000_000_000)
    watch = AgentsWatch(path)
    first = watch.current(RULES)
    assert first is not None and [a.id for a in first.agents] == ["maria"] and watch.error is None
    assert watch.current(RULES) is first  # unchanged: not read again

    _write(path, agent("maria"), agent("jan"), mtime=2_000_000_000)
    second = watch.current(RULES)
    assert second is not None and [a.id for a in second.agents] == ["maria", "jan"]

    _write(path, agent("maria", team="sales"), mtime=3_000_000_000)
    kept = watch.current(RULES)
    assert kept is second  # the broken file is not used
    assert watch.error is not None and "'sales' is not a team of the rules" in watch.error

    path.unlink()
    assert watch.current(RULES) is second and "cannot be read" in (watch.error or "")

    _write(path, agent("ana"), mtime=4_000_000_000)
    third = watch.current(RULES)
    assert third is not None and [a.id for a in third.agents] == ["ana"] and watch.error is None


def test_the_watch_checks_the_agents_again_when_the_rules_change(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    _write(path, agent("maria", team="hardware-de"))
    watch = AgentsWatch(path)
    assert watch.current(RULES) is not None
    fewer_teams = make_rules(
        teams=[{"name": "desk", "skills": ["general"]}, {"name": "triage", "skills": []}]
    )
    kept = watch.current(fewer_teams)
    assert kept is not None and kept.agents[0].teams == ("hardware-de",)
    assert "'hardware-de' is not a team of the rules" in (watch.error or "")


def test_a_file_touched_but_not_changed_is_not_parsed_again(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    _write(path, agent("maria"), mtime=1_000_000_000)
    watch = AgentsWatch(path)
    first = watch.current(RULES)
    os.utime(path, ns=(5_000_000_000, 5_000_000_000))
    assert watch.current(RULES) is first


def test_a_file_that_is_not_text_says_why() -> None:
    with pytest.raises(ParamsError, match=r"agents\.yaml: not valid YAML"):
        parse_agents(b"\xff\xfe\x00garbage\x80", RULES, "agents.yaml")

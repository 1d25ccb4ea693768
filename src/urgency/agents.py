"""The agents file: who works in which team, with which skills and languages, when, and how much.

A YAML file (params `operations.agents`, an example in `agents.yaml`) read into strict frozen
pydantic models like the rules file, then checked against the rules it works with: every team,
calendar and skill an agent names must be one the rules define. `urgency.assignment` chooses
among these agents; docs/operations.md ("Agents") describes the file.

`AgentsWatch` keeps a file's agents current in a long-running service: each call looks at the
file's modification time and size (cheap), reads it again only when they changed, and parses it
only when its content (digest) changed. A broken new file keeps the agents read before and says
why (`AgentsWatch.error`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from urgency.calendars import BusinessCalendar
from urgency.config import MAX_YAML_VALUES, Strict, located_problems
from urgency.errors import ParamsError
from urgency.language import normalise_tag

if TYPE_CHECKING:
    from urgency.rules import RuleSet

log = logging.getLogger("urgency.agents")

NAME = r"^[A-Za-z0-9_.@-]+$"


class HelpdeskIds(Strict):
    """The agent's user id in each helpdesk: written back as the ticket's assignee
    (Zendesk `assignee_id`, Freshdesk `responder_id`, Zammad `owner_id`, Jira `accountId`), and
    how a helpdesk's assignee is recognised as this agent."""

    zendesk: str | None = None
    freshdesk: str | None = None
    zammad: str | None = None
    jira: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _numbers_as_text(cls, value: object) -> object:
        # YAML reads `zendesk: 361234` as a number: an id is text.
        if isinstance(value, dict):
            return {
                key: str(item) if isinstance(item, int) and not isinstance(item, bool) else item
                for key, item in value.items()
            }
        return value


class AgentSpec(Strict):
    id: str = Field(pattern=NAME, max_length=200)
    name: str = ""
    email: str | None = None
    # One team, or several (`teams`): the agent takes tickets of each.
    team: str | None = None
    teams: list[str] = Field(default_factory=list)
    skills: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    calendar: str
    max_open: Annotated[int, Field(ge=1)]
    # A share of the work, relative to the others' (0.5: half as much); finite and bounded.
    weight: Annotated[float, Field(ge=0.01, le=100)] = 1.0
    helpdesk_ids: HelpdeskIds = HelpdeskIds()

    @model_validator(mode="after")
    def _team_or_teams(self) -> AgentSpec:
        if (self.team is None) == (not self.teams):
            raise ValueError("give `team` (one) or `teams` (a list), not both and not neither")
        return self

    @property
    def all_teams(self) -> tuple[str, ...]:
        return (self.team,) if self.team is not None else tuple(self.teams)


class AgentsFile(Strict):
    version: Literal[1] = 1
    description: str = ""
    agents: list[AgentSpec] = Field(min_length=1)


@dataclass(frozen=True)
class Agent:
    """One agent, checked against the rules: the calendar resolved, languages normalised."""

    id: str
    name: str
    teams: tuple[str, ...]
    skills: frozenset[str]
    languages: frozenset[str]
    calendar_name: str
    calendar: BusinessCalendar
    max_open: int
    weight: float
    email: str | None = None
    helpdesk_ids: Mapping[str, str] = field(default_factory=dict)

    def working(self, moment: datetime) -> bool:
        """Inside working hours on the agent's calendar at `moment` (aware)."""
        return self.calendar.is_open(moment)


@dataclass(frozen=True, eq=False)
class Agents:
    """The agents of one file, in file order (round-robin goes in this order)."""

    agents: tuple[Agent, ...]
    source: str
    digest: str

    @cached_property
    def by_id(self) -> dict[str, Agent]:
        return {agent.id: agent for agent in self.agents}

    def of_team(self, team: str) -> tuple[Agent, ...]:
        return tuple(agent for agent in self.agents if team in agent.teams)

    @cached_property
    def _aliases(self) -> dict[str, str]:
        # Lower-cased id, email or helpdesk user id -> agent id; the agent's own id wins.
        aliases: dict[str, str] = {}
        for agent in self.agents:
            for alias in (agent.email, *agent.helpdesk_ids.values()):
                if alias:
                    aliases.setdefault(alias.lower(), agent.id)
        for agent in self.agents:
            aliases[agent.id.lower()] = agent.id
        return aliases

    def agent_id(self, who: str | None, helpdesk: str | None = None) -> str | None:
        """The agent `who` names (an agent id, an email, a helpdesk user id), else None. With
        `helpdesk`, that helpdesk's user ids are looked at first."""
        if not who:
            return None
        if helpdesk is not None:
            for agent in self.agents:
                if agent.helpdesk_ids.get(helpdesk) == who:
                    return agent.id
        return self._aliases.get(who.lower())


def read_agents(path: Path, rules: RuleSet) -> Agents:
    """The agents file at `path`, checked against `rules` (`ParamsError` naming the file and
    every field that is wrong)."""
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ParamsError(f"agents file not found: {path}") from None
    except OSError as error:
        raise ParamsError(f"agents file {path}: cannot be read: {error.strerror or error}") from None
    return parse_agents(content, rules, str(path))


def parse_agents(content: bytes | str, rules: RuleSet, source: str) -> Agents:
    """An agents file's text -> checked `Agents`."""
    raw = _yaml(content, source)
    digest = hashlib.sha256(content.encode() if isinstance(content, str) else content).hexdigest()
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping with an `agents` list at the top level")
    try:
        spec = AgentsFile.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(located_problems(error, raw, source, "id")) from None
    return compile_agents(spec, rules, source, digest)


def _yaml(content: bytes | str, source: str) -> object:
    try:
        loader = yaml.SafeLoader(content)  # decodes the bytes: not UTF-8 is a YAMLError here
    except yaml.YAMLError as error:
        raise ParamsError(f"{source}: not valid YAML: {error}") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _size(node, {}) > MAX_YAML_VALUES:
            raise ParamsError(f"{source}: more than {MAX_YAML_VALUES:,} values; write the agents out plainly")
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ParamsError(f"{source}: not valid YAML: {error}") from None
    finally:
        loader.dispose()


def _size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Values `node` holds with every alias (*name) expanded, each node counted once (memo by
    identity): a few nested aliases cannot make the count, or the file, blow up."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = 1  # a node that holds itself counts once
    if isinstance(node, yaml.MappingNode):
        total = 1 + sum(_size(key, sizes) + _size(value, sizes) for key, value in node.value)
    elif isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_size(item, sizes) for item in node.value)
    else:
        total = 1
    sizes[id(node)] = total
    return total


def compile_agents(spec: AgentsFile, rules: RuleSet, source: str, digest: str = "") -> Agents:
    """Check the agents against the rules (teams, calendars, skills they define; ids unique) and
    resolve their calendars; every problem is reported at once."""
    teams = {team.name for team in rules.spec.teams}
    skills = {skill for team in rules.spec.teams for skill in team.skills}
    skills |= {skill for rule in rules.spec.routing.rules for skill in rule.skills}
    problems: list[str] = []
    seen: set[str] = set()
    helpdesk_owner: dict[tuple[str, str], str] = {}
    agents = []
    for position, agent in enumerate(spec.agents):
        where = f"agents.{position} ({agent.id})"
        # Ids are looked up without regard to case (`Agents.agent_id`): `Oliver` and `oliver`
        # would be one agent to the API.
        if agent.id.lower() in seen:
            problems.append(f"{where}.id: {agent.id!r} is used by an earlier agent (ids ignore case)")
        seen.add(agent.id.lower())
        for team in agent.all_teams:
            if team not in teams:
                problems.append(
                    f"{where}.team: {team!r} is not a team of the rules ({', '.join(sorted(teams))})"
                )
        if agent.calendar not in rules.calendars:
            problems.append(
                f"{where}.calendar: {agent.calendar!r} is not a calendar of the rules "
                f"({', '.join(sorted(rules.calendars))})"
            )
        for skill in agent.skills:
            if skill not in skills:
                problems.append(
                    f"{where}.skills: {skill!r} is not a skill the rules name ({', '.join(sorted(skills))})"
                )
        languages = []
        for language in agent.languages:
            tag = normalise_tag(language)
            if tag is None:
                problems.append(f"{where}.languages: an empty language")
            else:
                languages.append(tag)
        ids = {name: value for name, value in agent.helpdesk_ids.model_dump().items() if value}
        for helpdesk, value in ids.items():
            owner = helpdesk_owner.setdefault((helpdesk, value), agent.id)
            if owner != agent.id:
                problems.append(f"{where}.helpdesk_ids.{helpdesk}: {value!r} is also agent {owner!r}'s")
        if not problems:
            agents.append(
                Agent(
                    id=agent.id,
                    name=agent.name or agent.id,
                    teams=agent.all_teams,
                    skills=frozenset(agent.skills),
                    languages=frozenset(languages),
                    calendar_name=agent.calendar,
                    calendar=rules.calendars[agent.calendar],
                    max_open=agent.max_open,
                    weight=agent.weight,
                    email=agent.email,
                    helpdesk_ids=ids,
                )
            )
    if problems:
        raise ParamsError(f"{source}: {len(problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in problems))
    return Agents(agents=tuple(agents), source=source, digest=digest)


class AgentsWatch:
    """One agents file kept current for a long-running service (see the module's docstring).
    Thread-safe: requests in the thread pool call `current` at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.agents: Agents | None = None
        self.error: str | None = None  # why the file on disk is not the one in use
        self.loaded_at: float | None = None  # time.time() of the last successful read
        self._seen: tuple[int, int] | None = None  # (mtime ns, size) last looked at
        self._tried: RuleSet | None = None  # the rules that file was checked against
        self._rules: RuleSet | None = None  # the rules `agents` were checked against
        self._lock = threading.Lock()

    def current(self, rules: RuleSet) -> Agents | None:
        """The agents in use: read again when the file (or the rules it is checked against)
        changed; a file that cannot be used now keeps the agents read before."""
        try:
            stat = os.stat(self.path)
            seen: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            seen = None
        if seen is not None and seen == self._seen and rules is self._tried:
            return self.agents
        with self._lock:
            if seen is not None and seen == self._seen and rules is self._tried:
                return self.agents
            # Marked as seen only once read: a request that finds it seen finds its agents too.
            self._reload(rules)
            self._seen, self._tried = seen, rules
            return self.agents

    def _reload(self, rules: RuleSet) -> None:
        try:
            content = self.path.read_bytes()
        except OSError as error:
            self._fail(f"agents file {self.path}: cannot be read: {error.strerror or error}")
            return
        digest = hashlib.sha256(content).hexdigest()
        if self.agents is not None and self.agents.digest == digest and rules is self._rules:
            self.error = None  # touched, not changed
            return
        try:
            agents = parse_agents(content, rules, str(self.path))
        except ParamsError as error:
            self._fail(str(error))
            return
        changed = self.agents is not None
        self.agents, self.error, self._rules = agents, None, rules
        self.loaded_at = time.time()
        log.info("%s agents from %s (%s)", "reloaded" if changed else "loaded", self.path, digest[:12])

    def _fail(self, message: str) -> None:
        if message != self.error:
            kept = "keeping the agents read before" if self.agents is not None else "no agents in use"
            log.error("%s; %s", message, kept)
        self.error = message

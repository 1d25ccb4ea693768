"""SLA breach risk: the chance an open ticket misses its deadline.

Two estimates, one meaning (a probability, 0..1):
- `rules_risk`, needing no history to fit: the ticket waits for the queue ahead of it and then
  its own handling, each taking the team's median handling time; the wait is taken as
  log-normal around that (spread `RULES_SPREAD`), and the risk is the chance it runs past the
  time left;
- a model fitted on closed history (features `BREACH_FEATURES`, label: the SLA was missed),
  evaluated against `rules_risk` on the ServiceNow incident log.
"""

from __future__ import annotations

import math

# How spread out waits are around their median: the log-normal's sigma. 1.0: a quarter of
# waits take under half the median, a quarter over twice it (roughly, as handling times do).
RULES_SPREAD = 1.0
# What the model reads of a ticket when it is opened (plan: where the helpdesk has plans).
BREACH_FEATURES = ("priority", "team", "queue_length", "hour_of_day", "weekday", "category", "plan")


def expected_wait_hours(queue_ahead: int, median_handling_hours: float, agents: int = 1) -> float:
    """The median time until the ticket is done: the tickets ahead of it, shared among the
    team's agents, then its own handling."""
    return median_handling_hours * (max(queue_ahead, 0) / max(agents, 1) + 1.0)


def rules_risk(
    hours_left: float,
    queue_ahead: int,
    median_handling_hours: float,
    agents: int = 1,
    spread: float = RULES_SPREAD,
) -> float:
    """P(wait > hours_left) for a log-normal wait whose median is `expected_wait_hours`; 1.0
    once the deadline has passed."""
    if hours_left <= 0:
        return 1.0
    expected = expected_wait_hours(queue_ahead, median_handling_hours, agents)
    if expected <= 0:
        return 0.0
    z = math.log(hours_left / expected) / spread
    return 0.5 * math.erfc(z / math.sqrt(2))

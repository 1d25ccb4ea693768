"""The scoring rules: a YAML file -> a checked, compiled `RuleSet` -> one `Decision` per ticket.

A rules file says how a helpdesk turns model outputs and ticket metadata into a priority, a team
and deadlines (docs/rules.md explains how to write one; rules.yaml is a worked example).

One module per job, each importing only from those before it:

- `schema`: the file's strict pydantic models (`RulesFile` and its sections), `parse_duration`;
- `values`: the fields a rule may name (`FieldInfo`) and one parser for ticket values and rule
  literals (`parse_value`, `is_missing`, `TRUE_WORDS`, `FALSE_WORDS`);
- `conditions`: a rule's `when` as a `Condition` of `Matcher`s; `overlap`, `covers`,
  `satisfiable` compare conditions;
- `sections`: the compiler's first pass, each section on its own (`CompiledRule`);
- `compiler`: the checked `RuleSet` (`load_rules`, `parse_rules`, `compile_rules`), the second
  pass: how the rules interact;
- `engine`: `decide`, one ticket -> `Decision`; `surge_active`, `parse_timestamp`.

schema <- values <- conditions <- sections <- compiler <- engine. The engine is not imported here
(import `urgency.rules.engine`): loading rules does not need it.
"""

from urgency.rules.compiler import RuleSet, compile_rules, load_rules, parse_rules
from urgency.rules.conditions import covers, overlap
from urgency.rules.schema import RulesFile, parse_duration
from urgency.rules.sections import CompiledRule
from urgency.rules.values import FALSE_WORDS, TRUE_WORDS, FieldInfo, is_missing, parse_value

__all__ = [
    "FALSE_WORDS",
    "TRUE_WORDS",
    "CompiledRule",
    "FieldInfo",
    "RuleSet",
    "RulesFile",
    "compile_rules",
    "covers",
    "is_missing",
    "load_rules",
    "overlap",
    "parse_duration",
    "parse_rules",
    "parse_value",
]

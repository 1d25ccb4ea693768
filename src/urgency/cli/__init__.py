"""The `urgency` command line: one typer app wiring params onto the library functions.

Each command parses its options, calls one library function and prints the result; the
commands live in one module per group:

- `data`: validate-data
- `models`: train, distill, evaluate, export-models, compare, tune, thresholds
- `scoring`: predict, score, validate-rules, check-incidents
- `registry`: promote, rollback, record-digests, retrain
- `service`: serve, db upgrade, api-key
- `reports`: report agreement, report backlog, report operations, demo-agents, demo-operations
- `breach`: breach-risk
- `assignment`: assign (a scored queue's tickets to agents)

`common` holds what they share: the consoles, the error-to-exit-code mapping, the options.

Exit codes (for scripts): 0 success, 1 unexpected error, 2 usage error, 3 params error,
4 invalid ticket data, 5 model not found, 6 unreadable input to score, 7 database unreachable or
not migrated, 8 nothing to report (no decided ticket in the period), 9 Dask cluster unreachable
or a worker failed, 10 an output cannot be written (disk full, file too large, read-only, a
scoring folder an earlier run did not write), 11 nothing to roll back (`rollback`: the champion
replaced no earlier version, or the version asked for already is the champion). A head asked for
with --head that has no model is a 5 naming the head.
"""

from __future__ import annotations

import os

import typer

from urgency.cli import assignment, breach, data, models, registry, reports, scoring, service

app = typer.Typer(
    help="Learn how urgent, what kind and how upset a support ticket is.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Registered in the order `urgency --help` lists them (the groups `db` and `report` come last).
app.command("validate-data")(data.validate_data)
app.command()(models.train)
app.command()(models.distill)
app.command()(models.evaluate)
app.command()(scoring.predict)
app.command("export-models")(models.export_models)
app.command("validate-rules")(scoring.validate_rules)
app.command()(scoring.score)
app.command()(models.thresholds)
app.command("check-incidents")(scoring.check_incidents)
app.command()(assignment.assign)
app.command()(registry.promote)
app.command()(registry.rollback)
app.command("record-digests")(registry.record_digests)
app.command()(registry.retrain)
app.command()(models.compare)

db_app = typer.Typer(
    help="The service's database (SQLite by default, PostgreSQL by URL).", no_args_is_help=True
)
db_app.command("upgrade")(service.db_upgrade)
app.add_typer(db_app, name="db")

app.command("api-key")(service.api_key)
app.command()(service.serve)
app.command()(models.tune)

report_app = typer.Typer(help="Reports for managers (HTML page plus a JSON file of the figures).")
report_app.command("agreement")(reports.report_agreement)
report_app.command("backlog")(reports.report_backlog)
report_app.command("operations")(reports.report_operations)
app.add_typer(report_app, name="report")

app.command("demo-agents")(reports.demo_agents)
app.command("demo-operations")(reports.demo_operations)
app.command("breach-risk")(breach.breach_risk)


def main() -> None:
    # MLflow draws a progress bar per model download (every load checks a downloaded copy):
    # noise in a command's output and in logs. An explicit setting still wins.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    app()


if __name__ == "__main__":
    main()

"""Data commands: validate-data."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from urgency.cli.common import ParamsOption, console, setup_logging, stdout, user_errors
from urgency.config import load_params


@user_errors
def validate_data(params_path: ParamsOption = Path("params.yaml")) -> None:
    """Check every configured ticket source; report all problems with row numbers."""
    from urgency.data import load_configured

    setup_logging()
    params = load_params(params_path)
    result = load_configured(params.data)
    table = Table(title="ticket sources")
    for column in ("source", "rows read", "rows kept", "dropped", "labelled"):
        table.add_column(column)
    for report in result.reports:
        labelled = ", ".join(f"{head} {count}" for head, count in report.labelled.items())
        table.add_row(
            report.name, str(report.rows_read), str(report.rows_kept), str(report.rows_dropped), labelled
        )
    stdout().print(table)
    console.print(f"[green]ok[/green]: {len(result.tickets)} tickets valid")

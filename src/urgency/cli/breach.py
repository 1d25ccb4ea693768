"""The breach risk model's command: breach-risk (docs/operations.md, "Breach risk model")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from urgency.cli.common import ParamsOption, console, setup_logging, stdout, user_errors
from urgency.config import load_params


@user_errors
def breach_risk(
    log: Annotated[
        Path | None,
        typer.Option(
            "--log",
            help="ServiceNow incident event log (.csv or .csv.gz), e.g. "
            "../shared/data/incident_event_log.csv.gz: fitted and judged on its incidents.",
        ),
    ] = None,
    history: Annotated[
        Path | None,
        typer.Option(
            "--history",
            help="Your closed-tickets CSV (docs/reports.md) with deadlines and response/resolution "
            "times: fitted and judged on it, and this model is the one registered.",
        ),
    ] = None,
    promote_if_better: Annotated[
        bool,
        typer.Option(
            "--promote-if-better",
            help="Make the registered model the champion when its test AUC beats the rules estimate's.",
        ),
    ] = False,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The report (JSON): AUC, Brier, calibration tables.")
    ] = Path("data/breach_risk.json"),
    test_share: Annotated[
        float, typer.Option(min=0.05, max=0.5, help="The latest share of tickets (by opening) kept to judge.")
    ] = 0.2,
    params_path: ParamsOption = Path("params.yaml"),
) -> None:
    """Fit the SLA breach risk model on closed history, judge it against the rules estimate, register it."""
    from urgency.agreement import read_closed_tickets
    from urgency.breach_risk import breach_risk_report, closed_history, incident_history
    from urgency.incidents import read_incident_log

    if log is None and history is None:
        raise typer.BadParameter("give --log, --history or both", param_hint="--log/--history")
    setup_logging()
    params = load_params(params_path)
    histories: dict[str, Any] = {}
    if log is not None:
        histories["incident_log"] = (incident_history(read_incident_log(log), what=str(log)), str(log))
    if history is not None:
        histories["history"] = (closed_history(read_closed_tickets(history), what=str(history)), str(history))
    result = breach_risk_report(
        histories, params.mlflow, output=output, promote_if_better=promote_if_better, test_share=test_share
    )
    out = stdout()
    for name in histories:
        report = result[name]
        table = Table(
            title=f"{name}: {report['train']} tickets to fit, {report['test']} later ones to judge "
            f"(breach rate {report['breach_rate_test']:.1%})"
        )
        for column in ("estimate", "AUC", "Brier", "calibration error"):
            table.add_column(column)
        rows = [(f"model ({report['model']['family']})", report["model"])]
        rows += [
            (f"rules, {variant.replace('_', ' ')}", report["rules"][variant])
            for variant in ("agents_one", "agents_team")
        ]
        for label, figures in rows:
            auc = "n/a" if figures["auc"] is None else f"{figures['auc']:.3f}"
            table.add_row(label, auc, f"{figures['brier']:.3f}", f"{figures['calibration_error']:.3f}")
        table.add_row("always the train breach rate", "0.500", f"{report['brier_base_rate']:.3f}", "")
        out.print(table)
        gain = report["auc_gain"]
        if gain["gain"] is not None and gain["low"] is not None:
            out.print(
                f"model AUC - best rules AUC: {gain['gain']:+.3f} (95% interval {gain['low']:+.3f} to "
                f"{gain['high']:+.3f}, paired bootstrap over the judged tickets)",
                highlight=False,
            )
    registry = result[result["registered"]]["mlflow"]
    console.print(
        f"[green]ok[/green]: {registry['registered_name']} v{registry['version']} registered "
        f"({result['registered']}); champion: {'yes' if registry['champion'] else 'no'} - "
        f"{registry['champion_reason']}; report written to {output}",
        highlight=False,
    )

"""Registry commands: promote, rollback, record-digests, and retrain (a challenger through the gate)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from urgency.cli.common import (
    DatabaseOption,
    ParamsOption,
    check_family,
    console,
    heads,
    one_head,
    setup_logging,
    stdout,
    user_errors,
)
from urgency.config import load_params
from urgency.models import registry_client


@user_errors
def promote(
    head: Annotated[str, typer.Option("--head", help="Head whose champion to move.")],
    version: Annotated[str, typer.Option("--version", help="Registered version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why (kept as a tag on the version).")] = "promoted by hand",
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    params_path: ParamsOption = Path("params.yaml"),
) -> None:
    """Point the champion alias of a head at a model version; who, when and why become tags."""
    from urgency import promote as promotion

    head_name = one_head(head)
    params = load_params(params_path)
    name = params.mlflow.model_name(head_name)
    log = promotion.AliasLog.of(params.mlflow)
    previous = promotion.promote(
        registry_client(params.mlflow.tracking_uri),
        name,
        version,
        params.mlflow.champion_alias,
        reason=reason,
        by=by,
        log=log,
    )
    was = f"v{previous}" if previous else "unset"
    console.print(
        f"[green]ok[/green]: {name}@{params.mlflow.champion_alias} -> v{version} (was {was}); "
        f"recorded in MLflow experiment {log.experiment}",
        highlight=False,
    )


@user_errors
def rollback(
    head: Annotated[str, typer.Option("--head", help="Head whose champion to move back.")],
    reason: Annotated[str, typer.Option(help="Why (kept as a tag and in the alias-move run).")],
    to: Annotated[
        str | None,
        typer.Option("--to", help="Version to make champion; default: the one the champion replaced."),
    ] = None,
    by: Annotated[str | None, typer.Option(help="Who (default: the login name).")] = None,
    params_path: ParamsOption = Path("params.yaml"),
) -> None:
    """Move a head's champion back to the version it replaced (or --to VERSION); recorded in MLflow."""
    from urgency import promote as promotion

    head_name = one_head(head)
    params = load_params(params_path)
    name = params.mlflow.model_name(head_name)
    log = promotion.AliasLog.of(params.mlflow)
    before, after = promotion.rollback(
        registry_client(params.mlflow.tracking_uri),
        name,
        params.mlflow.champion_alias,
        reason=reason,
        to=to,
        by=by,
        log=log,
    )
    console.print(
        f"[green]ok[/green]: {name}@{params.mlflow.champion_alias} -> v{after} (was v{before}); "
        f"recorded in MLflow experiment {log.experiment}",
        highlight=False,
    )


@user_errors
def record_digests(
    head: Annotated[str, typer.Option("--head", help="Head of the model version.")],
    version: Annotated[str, typer.Option("--version", help="Registered version to vouch for.")],
    reason: Annotated[str, typer.Option(help="Why its files are trusted (kept as a tag on the version).")],
    by: Annotated[str | None, typer.Option(help="Who vouches (default: the login name).")] = None,
    params_path: ParamsOption = Path("params.yaml"),
) -> None:
    """Record the file digests of a version registered before digests were recorded, so it loads.

    Loading a model runs code from its files: record digests only for files you trust as they are
    now. A version that already has a record is refused (a record is never replaced)."""
    import getpass

    from urgency.models import record_version_digests

    head_name = one_head(head)
    params = load_params(params_path)
    name = params.mlflow.model_name(head_name)
    who = by or getpass.getuser()
    digests = record_version_digests(
        registry_client(params.mlflow.tracking_uri), name, version, by=who, reason=reason
    )
    console.print(
        f"[green]ok[/green]: {name} v{version}: digests of {len(digests)} files recorded, "
        f"vouched for by {who}",
        highlight=False,
    )


@user_errors
def retrain(
    history: Annotated[
        list[Path],
        typer.Option("--history", help="New ticket history (.csv, .parquet, .jsonl; repeat for more files)."),
    ],
    params_path: ParamsOption = Path("params.yaml"),
    head: Annotated[
        list[str] | None,
        typer.Option(
            "--head", help="Head(s) to retrain (repeat); default: those the held-out slice has labels for."
        ),
    ] = None,
    family: Annotated[
        str | None, typer.Option(help="Model family of the challenger (default: params training.family).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Read the history through this source of params data.sources (its columns and label "
            "maps); default: the only source, or with several the canonical columns.",
        ),
    ] = None,
    database_url: DatabaseOption = None,
    output: Annotated[
        Path | None, typer.Option(help="Also write drift.json/.md and retrain.json/.md into this folder.")
    ] = None,
    by: Annotated[
        str | None, typer.Option(help="Who (recorded with a promotion; default: the login name).")
    ] = None,
) -> None:
    """Train a challenger on new history plus agents' corrections; promote it only through the gate.

    The newest retrain.holdout_fraction of the history (by created_at) is held out; the
    challenger replaces a head's champion when its held-out macro-F1 is higher by
    promotion.min_macro_f1_gain and no class's recall drops more than promotion.max_recall_drop.
    Heads default to those the held-out slice has labels for."""
    from urgency.retrain import retrain_with_corrections

    setup_logging()
    chosen = heads(head) if head else None
    check_family(family)
    params = load_params(params_path)
    result = retrain_with_corrections(
        params,
        history,
        params_path=params_path,
        heads=chosen,
        family=family,
        source=source,
        database_url=database_url,
        by=by,
        output=output,
        on_stage=lambda text: console.print(text),
    )
    drift = Table(title=f"drift: new history vs the training data of {', '.join(result.drift_reference)}")
    for column in ("feature", "PSI", "JS", "drifted", "rule"):
        drift.add_column(column)
    for feature in result.drift.features:
        drift.add_row(
            feature.feature,
            f"{feature.psi:.3f}",
            f"{feature.js:.3f}",
            "yes" if feature.drifted else "no",
            feature.rule,
        )
    stdout().print(drift)
    counts = ", ".join(f"{key} {value}" for key, value in result.counts.items())
    console.print(counts, highlight=False)
    for name, outcome in result.heads.items():
        verdict = "[green]promoted[/green]" if outcome.promoted else "[yellow]champion kept[/yellow]"
        console.print(
            f"{name}: challenger v{outcome.challenger_version} vs champion v{outcome.champion_version} on "
            f"{outcome.gate.rows} held-out tickets: {verdict}",
            highlight=False,
        )
        for reason in outcome.gate.reasons:
            console.print(f"  - {reason}", highlight=False)
    if any(outcome.promoted for outcome in result.heads.values()):
        import yaml

        sources = [s.model_dump(mode="json", exclude_defaults=True) for s in result.history_sources]
        console.print(
            "add the history to data.sources in the params file, so the next retrain counts it as "
            "training data:\n" + yaml.safe_dump(sources, sort_keys=False),
            highlight=False,
        )
    console.print(
        f"MLflow run {result.run_id}" + (f"; reports in {output}" if output else ""), highlight=False
    )

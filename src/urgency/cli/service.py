"""Service commands: serve, db upgrade, api-key. Only `serve` imports the service (`serve/`);
the store and the keys come from the library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from urgency.cli.common import (
    DatabaseOption,
    ModelDirOption,
    ParamsOption,
    console,
    setup_logging,
    stdout,
    user_errors,
)

if TYPE_CHECKING:
    from serve.launch import Startup


@user_errors
def serve(
    params_path: ParamsOption = Path("params.yaml"),
    host: Annotated[str, typer.Option(help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes, each loading the models; default: one per two cores."),
    ] = None,
    model_dir: ModelDirOption = None,
    database_url: DatabaseOption = None,
    migrate: Annotated[bool, typer.Option(help="Apply the store's migrations before starting.")] = True,
) -> None:
    """Start the prediction service (uvicorn); settings also come from URGENCY_* variables."""
    from serve import launch

    setup_logging()

    def show(startup: Startup) -> None:
        console.print(f"store: {startup.store}")
        if startup.local_dev_key:
            console.print("[yellow]local mode[/yellow]: API key 'local-dev-key' has every scope")

    settings = launch.service_settings(params_path, model_dir=model_dir, database_url=database_url)
    launch.run(
        settings,
        host=host,
        port=port,
        workers=workers or launch.default_workers(),
        migrate=migrate,
        on_ready=show,
    )


@user_errors
def db_upgrade(params_path: ParamsOption = Path("params.yaml"), database_url: DatabaseOption = None) -> None:
    """Create the store's tables or apply the migrations it lacks."""
    from urgency.store import database_url as store_url
    from urgency.store import redact, upgrade_database

    url = store_url(database_url, params_path)
    before, after = upgrade_database(url)
    console.print(f"[green]ok[/green]: {redact(url)} at revision {after} (was {before or 'empty'})")


@user_errors
def api_key(
    name: Annotated[str, typer.Option(help="A name for the key (shown in logs and 403 messages).")],
    scope: Annotated[list[str], typer.Option("--scope", help="score, feedback or admin (repeat).")],
) -> None:
    """Make a new random API key; prints the key once and the entry for URGENCY_API_KEYS."""
    from urgency.keys import new_key

    try:
        key, entry = new_key(name, scope)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    stdout().print(f"key (give it to the client; it is not stored): {key}", highlight=False)
    stdout().print(f"URGENCY_API_KEYS entry: {json.dumps(entry)}", highlight=False, soft_wrap=True)

"""What every command group shares: the consoles, the error-to-exit-code mapping, the common
options, the progress bar, and the few helpers that turn options into library inputs (heads,
rules, models, a Dask client)."""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from urgency.config import FAMILIES, HEADS, SIGNALS_MODEL, Params
from urgency.errors import OutputError, UrgencyError

if TYPE_CHECKING:
    from urgency.models import HeadModel, ModelSource
    from urgency.rules import RuleSet

# soft_wrap: messages stay on one line, so scripts can grep them.
console = Console(stderr=True, soft_wrap=True)

ParamsOption = Annotated[
    Path, typer.Option("--params", "-p", help="Params file (YAML).", envvar="URGENCY_PARAMS")
]
HeadsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--head",
        help="Head(s) to work on (repeat); default: every head that has a model (train: that has labels).",
    ),
]
SubjectColumnOption = Annotated[str | None, typer.Option(help="Subject column (may be absent).")]
BodyColumnOption = Annotated[str | None, typer.Option(help="Body column.")]
ChunkSizeOption = Annotated[int | None, typer.Option(min=1, help="Rows per chunk.")]
JobsOption = Annotated[
    int | None,
    typer.Option(
        "--jobs", "-j", min=1, help="Processes that score chunks side by side; default: every core."
    ),
]
ModelDirOption = Annotated[
    Path | None,
    typer.Option(
        "--model-dir", help="Folder with one MLflow model per head (DIR/<head>); default: registry champions."
    ),
]
RulesOption = Annotated[
    Path | None, typer.Option("--rules", help="Rules file (YAML); default: scoring.rules in the params.")
]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="URGENCY_DATABASE_URL",
        help="SQLAlchemy URL; default: sqlite:///<params folder>/data/service.db.",
    ),
]

F = TypeVar("F", bound=Callable[..., Any])

# The file system refusing a write: exit code 10 (OutputError), whichever code wrote.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT}


def user_errors(command: F) -> F:
    """Print an UrgencyError's message (never a stack trace) and exit with its code."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UrgencyError as error:
            console.print(f"[red]error:[/red] {error}", highlight=False)
            raise typer.Exit(error.exit_code) from None
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise  # usage errors and exits keep click's own handling
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(130) from None
        except Exception as error:
            if os.environ.get("URGENCY_DEBUG"):
                raise
            if isinstance(error, OSError) and error.errno in _WRITE_ERRNOS:
                # Outputs written through urgency.files already say OutputError; any other write
                # the file system refuses (a full disk, a file too large, read-only) gets its code.
                where = f"{error.filename}: " if error.filename else ""
                message = f"{where}cannot be written: {error.strerror}"
                console.print(f"[red]error:[/red] {message}", highlight=False)
                raise typer.Exit(OutputError.exit_code) from None
            console.print(
                f"[red]unexpected error:[/red] {type(error).__name__}: {error}\n"
                "(set URGENCY_DEBUG=1 to see the stack trace)",
                highlight=False,
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def heads(selected: list[str] | None) -> list[str] | None:
    """The --head values, checked (a usage error names the known heads). None when not given:
    every head that has a model (`urgency.models.resolve` decides which), or for training every
    head that has labels."""
    if not selected:
        return None
    unknown = [head for head in selected if head not in HEADS]
    if unknown:
        raise typer.BadParameter(f"unknown head(s) {unknown}; choose from {list(HEADS)}", param_hint="--head")
    return list(dict.fromkeys(selected))


def one_head(name: str) -> str:
    """A single --head value, checked like `heads`."""
    chosen = heads([name])
    assert chosen is not None  # a name was given
    return chosen[0]


def check_family(family: str | None) -> None:
    """--family, when given, names a model family."""
    if family is not None and family not in FAMILIES:
        raise typer.BadParameter(
            f"unknown family {family!r}; choose from {list(FAMILIES)}", param_hint="--family"
        )


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    # MLflow and alembic are chatty about database set-up, Dask about cluster life; warnings still show.
    for name in ("mlflow", "alembic", "matplotlib", "distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # We log our own scikit-learn models with pickle on purpose (see train.py); no warning each time.
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def stdout() -> Console:
    # Off a terminal rich assumes 80 columns and would cut the tables; logs want whole lines.
    return Console(width=None if sys.stdout.isatty() else 160)


def load_rules(params: Params, rules_path: Path | None) -> RuleSet:
    """The --rules file (default: the params' scoring.rules); its warnings are shown, not fatal."""
    from urgency.rules import load_rules as read_rules

    rules = read_rules(rules_path or params.scoring.rules, category_labels=params.heads.category_labels)
    for warning in rules.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    return rules


def parse_now(text: str | None) -> datetime:
    """--now as an aware datetime (no offset: UTC); none: the clock."""
    from datetime import UTC

    if text is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 timestamp", param_hint="--now") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# Model loading: every command that scores loads its models through these two helpers, so model
# loading can move to its own module by changing them alone.


def model_source(
    params: Params, heads: Sequence[str] | None, model_dir: Path | None, *, signals: bool = False
) -> ModelSource:
    """The heads' models pinned: --model-dir, else the registry champions' versions now. `heads`
    None: every head that has one (the rule lives in `urgency.models.resolve`). `signals` (the
    commands that score): the text signals' model too, when there is one."""
    from urgency.models import resolve

    return resolve(
        heads,
        model_dir=model_dir,
        tracking_uri=params.mlflow.tracking_uri,
        model_names=model_names(params),
        alias=params.mlflow.champion_alias,
        signals=signals,
    )


def model_names(params: Params) -> dict[str, str]:
    """Registered model names: each head's, and the text signals' model's."""
    return {name: params.mlflow.model_name(name) for name in (*HEADS, SIGNALS_MODEL)}


def load_models(
    params: Params, heads: Sequence[str] | None, model_dir: Path | None, *, signals: bool = False
) -> dict[str, HeadModel]:
    """The heads' models from --model-dir, else the registry champions (exactly the versions
    `model_source` pinned); `heads` None: every head that has one; `signals`: and the text
    signals' model, when there is one."""
    from urgency.models import load_models as load_pinned

    return load_pinned(model_source(params, heads, model_dir, signals=signals))


@contextmanager
def dask_client(scheduler: str | None) -> Iterator[Any]:
    """A client of --scheduler's cluster; None (no --scheduler): work in this process."""
    if not scheduler:
        yield None
        return
    from urgency.distributed import dask_client as connect

    with connect(scheduler) as client:
        yield client

"""The agreement report: one self-contained HTML page (and a JSON file of the same figures).

The figures come from `urgency.agreement`; this module picks the tickets of a period (from the
service's store or a closed-tickets CSV), draws the plots with matplotlib (inlined as SVG, so
the page needs no network, scripts, style sheets or fonts from anywhere) and fills the jinja2
template `templates/agreement_report.html`. `urgency report agreement` and the service's
`GET /v1/reports/agreement` both call these functions.

Just over 400 lines: the figures' plots and the page they go into are one artifact; splitting
the plots from the page would only move the data they share.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from urgency.agreement import (
    FIELDS,
    HEADS,
    EmptyReport,
    agreement_figures,
    closed_tickets_from_store,
    in_period,
    read_closed_export,
    read_closed_tickets,
)

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from urgency.config import Params, Source
    from urgency.rules import RuleSet
    from urgency.store import Store

WeekOf = Literal["created_at", "scored_at"]
# Colours per field, the same in every plot (colour-blind safe: Okabe-Ito).
COLOURS = {
    "urgency": "#0072B2",
    "category": "#E69F00",
    "sentiment": "#009E73",
    "priority": "#CC79A7",
    "team": "#56B4E9",
    "coverage": "#999999",
}


@dataclass(frozen=True)
class ReportSettings:
    """What the figures need from the params and rules: label orders, levels, thresholds."""

    labels: Mapping[str, Sequence[str]]
    levels: Sequence[str]
    thresholds: Mapping[str, float]


def report_settings(params: Params, rules: RuleSet) -> ReportSettings:
    return ReportSettings(
        # A head not configured (a helpdesk without its labels) has no label order to give.
        labels={head: list(params.heads.get(head).labels) for head in HEADS if getattr(params.heads, head)},
        levels=list(rules.levels),
        thresholds=dict(rules.spec.confidence.thresholds),
    )


# ---------------------------------------------------------------------------------------------
# The period


class PeriodError(ValueError):
    """A bad `since` or `until`; `name` says which, `reason` what is wrong without the value
    given (for answers that must not echo their input, such as the service's 422)."""

    def __init__(self, name: str, message: str, reason: str) -> None:
        super().__init__(message)
        self.name = name
        self.reason = reason


def parse_moment(text: str | None, *, end_of_day: bool = False) -> datetime | None:
    """ISO 8601 date or date-time (no offset: UTC). A date alone means the start of that day, or
    with `end_of_day` the start of the next, so `--until 2026-12-31` includes 31 December."""
    if text is None or text.strip() == "":
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end_of_day else moment
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date (2026-01-31) or date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_period(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """(since, until) as a half-open [since, until) interval; raises ValueError naming the bad one."""
    unreadable = "not an ISO 8601 date (2026-01-31) or date-time"
    try:
        start = parse_moment(since)
    except ValueError as error:
        raise PeriodError("since", f"since: {error}", f"since is {unreadable}") from None
    try:
        end = parse_moment(until, end_of_day=True)
    except ValueError as error:
        raise PeriodError("until", f"until: {error}", f"until is {unreadable}") from None
    if start is not None and end is not None and end <= start:
        raise PeriodError(
            "until", f"until ({until}) must not be before since ({since})", "until must not be before since"
        )
    return start, end


def describe_period(since: datetime | None, until: datetime | None) -> str:
    """The period in words ("2026-01-01 to 2026-01-31", "the beginning to now")."""
    return _describe(since, until)


def _describe(since: datetime | None, until: datetime | None) -> str:
    start = since.date().isoformat() if since else "the beginning"
    end = (until - timedelta(seconds=1)).date().isoformat() if until else "now"
    return f"{start} to {end}"


# ---------------------------------------------------------------------------------------------
# Figures from a source


def figures_from_frame(
    frame: pd.DataFrame,
    settings: ReportSettings,
    *,
    source: str,
    since: datetime | None = None,
    until: datetime | None = None,
    week_of: WeekOf = "created_at",
    top: int = 20,
) -> dict[str, Any]:
    """The report's figures over the closed tickets of [since, until), with where they came from."""
    chosen = in_period(frame, since, until)
    if chosen.empty:
        raise EmptyReport(
            f"no decided tickets from {_describe(since, until)} in {source}: nothing to report "
            f"({len(frame)} decided ticket(s) outside the period)"
        )
    figures = agreement_figures(
        chosen,
        labels=settings.labels,
        levels=settings.levels,
        thresholds=settings.thresholds,
        week_of=week_of,
        top=top,
    )
    return {
        "title": "Model vs agent agreement",
        "source": source,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "period": _describe(since, until),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **figures,
    }


def figures_from_store(
    store: Store,
    settings: ReportSettings,
    *,
    source: str,
    since: datetime | None = None,
    until: datetime | None = None,
    week_of: WeekOf = "created_at",
    top: int = 20,
) -> dict[str, Any]:
    """Figures over the tickets scored in [since, until) that agents decided on (the store keeps
    the merge rule: the latest decision wins, field by field)."""
    frame = closed_tickets_from_store(store.decisions(since, until))
    return figures_from_frame(
        frame, settings, source=source, since=since, until=until, week_of=week_of, top=top
    )


def figures_from_csv(
    path: Path,
    settings: ReportSettings,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    week_of: WeekOf = "created_at",
    top: int = 20,
    export: Source | None = None,
    prefix: str = "",
) -> dict[str, Any]:
    """Figures over a closed-tickets CSV export (docs/reports.md), or with `export` over a scored
    file of that source's export whose label columns hold the agents' values (`prefix`: of the
    columns `urgency score` added); the period is taken on scored_at when the file has that
    column, else on created_at."""
    if export is not None:
        frame = read_closed_export(path, export, prefix, labels=settings.labels, levels=settings.levels)
    else:
        frame = read_closed_tickets(path, labels=settings.labels, levels=settings.levels)
    return figures_from_frame(
        frame, settings, source=str(path), since=since, until=until, week_of=week_of, top=top
    )


# ---------------------------------------------------------------------------------------------
# Plots: matplotlib's object API (no pyplot state), so the service can draw in many threads


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return figure


def _data_uri(figure: Figure) -> str:
    import matplotlib
    from matplotlib.text import Text

    # Every label is plain text: a ticket's plan, channel or language such as "$\\foo{$" would
    # otherwise be read as math and fail to draw (and a "$" pair would vanish into italics).
    for text in figure.findobj(Text):
        text.set_parse_math(False)
    buffer = io.BytesIO()
    # Text stays text (the browser's sans-serif draws it): a tenth of the size of glyph paths.
    # metadata Date None: the same figures draw the same bytes.
    with matplotlib.rc_context({"svg.fonttype": "none", "text.parse_math": False}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def new_figure(width: float, height: float) -> Figure:
    """A figure in the reports' look (the operations page draws with it too)."""
    return _figure(width, height)


def data_uri(figure: Figure) -> str:
    """The figure as an inline SVG data URI, text kept as text (see `_data_uri`)."""
    return _data_uri(figure)


def _pct(value: float | None) -> float:
    return float("nan") if value is None else 100.0 * value


def plot_summary(fields: Mapping[str, Mapping[str, Any]]) -> str:
    """Agreement, coverage and precision per field, side by side."""
    figure = _figure(7.5, 3.0)
    axes = figure.subplots()
    names = list(fields)
    width = 0.27
    for offset, (measure, colour) in enumerate(
        (("agreement", "#0072B2"), ("coverage", "#999999"), ("precision", "#D55E00"))
    ):
        xs = [i + (offset - 1) * width for i in range(len(names))]
        axes.bar(xs, [_pct(fields[n][measure]) for n in names], width, label=measure, color=colour)
    axes.set_xticks(range(len(names)), names)
    axes.set_ylim(0, 100)
    axes.set_ylabel("% of tickets")
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    return _data_uri(figure)


def plot_confusion(name: str, figures: Mapping[str, Any]) -> str:
    """A heatmap of the confusion matrix, each row scaled to the agent's label (recall)."""
    import numpy as np

    matrix = np.array(figures["confusion"], dtype=float)
    labels = figures["labels"]
    size = 2.2 + 0.45 * len(labels)
    figure = _figure(size + 1.2, size)
    axes = figure.subplots()
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    axes.set_xlabel(f"model's {name}")
    axes.set_ylabel(f"agent's {name}")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            axes.text(
                j, i, f"{int(count)}", ha="center", va="center", fontsize=7,
                color="white" if shares[i, j] > 0.6 else "black",
            )  # fmt: skip
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the agent's row")
    return _data_uri(figure)


def plot_trend(weeks: Sequence[Mapping[str, Any]], names: Sequence[str] = FIELDS) -> str:
    """Agreement per field (`names`: those the report carries) and coverage, week by week."""
    dated = [week for week in weeks if week["value"] != "(none)"]
    figure = _figure(7.5, 3.2)
    axes = figure.subplots()
    labels = [week["value"] for week in dated]
    for name in (*names, "coverage"):
        key = "coverage" if name == "coverage" else f"{name}_agreement"
        values = [_pct(week[key]) for week in dated]
        style = "--" if name == "coverage" else "-"
        axes.plot(range(len(dated)), values, style, marker="o", markersize=3, label=name, color=COLOURS[name])
    axes.set_xticks(range(len(dated)), labels, rotation=45, ha="right", fontsize=8)
    axes.set_ylim(0, 100)
    axes.set_ylabel("% agreement")
    axes.set_xlabel("week starting")
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes.grid(alpha=0.3)
    return _data_uri(figure)


def plot_slice(name: str, rows: Sequence[Mapping[str, Any]], limit: int = 12) -> str:
    """Urgency and priority agreement for the largest values of one slice."""
    shown = list(rows)[:limit]
    figure = _figure(7.5, 1.0 + 0.32 * len(shown))
    axes = figure.subplots()
    ys = range(len(shown))
    for offset, field in enumerate(("urgency", "priority")):
        axes.barh(
            [y + (offset - 0.5) * 0.38 for y in ys],
            [_pct(row[f"{field}_agreement"]) for row in shown],
            0.38,
            label=f"{field} agreement",
            color=COLOURS[field],
        )
    axes.set_yticks(list(ys), [f"{row['value']} ({row['tickets']})" for row in shown], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, 100)
    axes.set_xlabel(f"% agreement, by {name} (tickets)")
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes.grid(axis="x", alpha=0.3)
    return _data_uri(figure)


def plot_sla(rows: Sequence[Mapping[str, Any]]) -> str:
    """First-response and resolution attainment per priority."""
    figure = _figure(7.5, 2.8)
    axes = figure.subplots()
    names = [row["priority"] for row in rows]
    for offset, (target, colour) in enumerate((("first_response", "#0072B2"), ("resolution", "#009E73"))):
        xs = [i + (offset - 0.5) * 0.38 for i in range(len(names))]
        label = target.replace("_", " ")
        axes.bar(xs, [_pct(row[f"{target}_attainment"]) for row in rows], 0.38, label=label, color=colour)
    axes.set_xticks(range(len(names)), names)
    axes.set_ylim(0, 100)
    axes.set_ylabel("% met the deadline")
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    axes.grid(axis="y", alpha=0.3)
    return _data_uri(figure)


def plots(figures: Mapping[str, Any]) -> dict[str, Any]:
    fields = figures["fields"]  # only the heads that had a model (see `agreement_figures`)
    return {
        "summary": plot_summary(fields),
        "confusion": {name: plot_confusion(name, fields[name]) for name in fields if fields[name]["used"]},
        "trend": plot_trend(figures["trend"], list(fields)) if figures["trend"] else None,
        "slices": {
            name: plot_slice(name, rows) for name, rows in figures["slices"].items() if name != "week"
        },
        "sla": plot_sla(figures["sla"]),
    }


# ---------------------------------------------------------------------------------------------
# The page and the JSON file


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _decimal(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def render_page(template_name: str, filters: Mapping[str, Callable[..., str]], **context: Any) -> str:
    """A report template (`urgency/templates`) rendered to one HTML page: no external script,
    style sheet, font or image. Shared by the agreement and operations reports."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    environment = Environment(
        loader=PackageLoader("urgency", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,  # a misspelt figure name is an error, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(filters)
    return environment.get_template(template_name).render(**context)


def render_html(figures: Mapping[str, Any]) -> str:
    """The agreement report as one HTML page."""
    # The fields the figures carry: a head with no model is left out of every table.
    return render_page(
        "agreement_report.html",
        {"percent": percent, "decimal": _decimal},
        figures=figures,
        plots=plots(figures),
        fields=list(figures["fields"]),
        heads=HEADS,
    )


def to_json(figures: Mapping[str, Any]) -> str:
    return json.dumps(figures, indent=2, ensure_ascii=False, allow_nan=False, default=str)


def write_pages(html: str, figures: Mapping[str, Any], output: Path) -> Path:
    """Write the page `html` to `output` and the figures beside it (`<name>.json`); returns the
    JSON path. Each file appears whole or not at all (`urgency.files.write_text_atomic`): a full
    disk leaves no partial file and an older report intact, and is an OutputError naming the file."""
    from urgency.files import write_text_atomic

    json_path = output.with_suffix(".json")
    for path, text in ((output, html), (json_path, to_json(figures))):
        write_text_atomic(text, path)
    return json_path


def write_report(figures: Mapping[str, Any], output: Path) -> Path:
    """The agreement page at `output` and its figures beside it (`write_pages`)."""
    return write_pages(render_html(figures), figures, output)


def agreement_report(
    settings: ReportSettings,
    output: Path,
    *,
    input: Path | None,
    database_url: str,
    since: datetime | None = None,
    until: datetime | None = None,
    week_of: WeekOf = "created_at",
    top: int = 20,
    export: Source | None = None,
    prefix: str = "",
) -> tuple[dict[str, Any], Path]:
    """Figures from a closed-tickets CSV (`input`; with `export`, a scored file of that source's
    export: `figures_from_csv`) or else the service's store at `database_url`, written as the
    page `output` and its JSON; returns (figures, JSON path)."""
    from urgency.store import Store, StoreError, check_schema, make_engine, redact, sqlite_path

    options: dict[str, Any] = {"since": since, "until": until, "week_of": week_of, "top": top}
    if input is not None:
        figures = figures_from_csv(input, settings, **options, export=export, prefix=prefix)
    else:
        path = sqlite_path(database_url)
        # make_engine would create an empty SQLite file; a missing one means nothing was scored.
        if path is not None and not path.exists():
            raise StoreError(f"no store at {path}: the service has not run yet (or use --input closed.csv)")
        engine = make_engine(database_url)
        try:
            check_schema(engine)
            figures = figures_from_store(Store(engine), settings, source=redact(database_url), **options)
        finally:
            engine.dispose()
    return figures, write_report(figures, output)

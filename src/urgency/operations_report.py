"""The operations report: one self-contained HTML page and a JSON file of the same figures.

The figures come from `urgency.operations`; this module gathers its inputs (CSV files, or the
service's store: decisions, feedback status / assignee / CSAT, ticket states, assignments, and
the repeat-issue cluster alerts, which only the store has),
draws the plots in the agreement report's look (`urgency.report.new_figure`, inline SVG) and
fills `templates/operations_report.html`. `urgency report operations` and the service's
`GET /v1/reports/operations` call these functions.

Every weekly plot draws a partial week hatched, its points hollow and the line into it dashed,
and marks each promotion (or, without an audit trail, each new model version seen) with a
dotted vertical line and its label.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from urgency.agreement import closed_tickets_from_store, in_period
from urgency.errors import EmptyReport
from urgency.operations import (
    BACKLOG_COLUMNS,
    HOUR_BINS,
    OPEN_STATUSES,
    OperationsSettings,
    backlog_stand_in,
    operations_figures,
    read_assignments,
    read_open_tickets,
    read_operations_closed,
    read_promotions,
    type_extension,
    typed_assignments,
)
from urgency.report import data_uri, describe_period, new_figure, percent, render_page, write_pages

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from urgency.rules import RuleSet
    from urgency.store import Store

# Okabe-Ito, as the agreement report: colour-blind safe.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
# Priorities, most urgent first: warm to cool, the rest grey.
PRIORITY_COLOURS = ("#D55E00", "#E69F00", "#0072B2", "#56B4E9", "#999999")
PARTIAL_NOTE = "hatched: a partial week (the period covers only part of it)"


def operations_settings(rules: RuleSet, *, top: int = 20) -> OperationsSettings:
    return OperationsSettings(levels=list(rules.levels), top=top)


# ---------------------------------------------------------------------------------------------
# Inputs


def frames_from_files(
    closed: Path,
    settings: OperationsSettings,
    *,
    open_tickets: Path | None = None,
    assignments: Path | None = None,
    promotions: Path | None = None,
    labels: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The report's inputs from CSV files (docs/operations.md), each checked as read."""
    return {
        "closed": read_operations_closed(closed, labels=labels, levels=settings.levels),
        "open": read_open_tickets(open_tickets, settings.levels) if open_tickets else pd.DataFrame(),
        "assignments": read_assignments(assignments) if assignments else None,
        "promotions": read_promotions(promotions) if promotions else None,
    }


def _frame(connection: Any, query: Any) -> pd.DataFrame:
    return pd.DataFrame(connection.execute(query).mappings().all())


def frames_from_store(store: Store, backlog_now: pd.DataFrame | None = None) -> dict[str, Any]:
    """The report's inputs from the service's store: closed tickets are the decided tickets
    (`Store.decisions`) whose latest status is not open (no status known: closed, as the
    agreement report counts them), with the feedback's latest assignee and CSAT; the backlog is
    every ticket whose state is open, with its latest decision; the assignments as stored.
    All of them: `figures_from_frames` picks the period by the tickets' created time.
    `backlog_now`: the open backlog as `urgency.backlog.read_backlog` gives it (hours left, queue,
    the breach risks), used for the open tickets in place of the stand-in."""
    import sqlalchemy as sa

    from urgency.store import assignments, feedback, predictions, ticket_states

    # Not `Store.decisions(since, until)`: that picks by the time of scoring.
    decided = closed_tickets_from_store(store.decisions())
    with store.engine.connect() as connection:
        events = _frame(
            connection,
            sa.select(feedback.c.ticket_id, feedback.c.status, feedback.c.assignee, feedback.c.csat).order_by(
                feedback.c.id
            ),
        )
        states = _frame(connection, sa.select(ticket_states))
        moves = _frame(connection, sa.select(assignments).order_by(assignments.c.id))
        open_ids = (
            [] if states.empty else states.loc[states["status"].isin(OPEN_STATUSES), "ticket_id"].tolist()
        )
        scored = (
            _frame(
                connection,
                sa.select(predictions)
                .where(predictions.c.ticket_id.in_(open_ids))
                .order_by(predictions.c.id),
            )
            if open_ids
            else pd.DataFrame()
        )
    latest = events.groupby("ticket_id").last() if not events.empty else pd.DataFrame()  # last non-null
    state = states.set_index("ticket_id") if not states.empty else pd.DataFrame()

    def column(frame: pd.DataFrame, name: str, ids: pd.Series) -> pd.Series:
        if frame.empty or name not in frame.columns:
            return pd.Series(None, index=ids.index, dtype=object)
        return ids.map(frame[name]).astype(object)

    closed = decided
    if not decided.empty:
        ids = decided["ticket_id"]
        status = column(state, "status", ids).fillna(column(latest, "status", ids))
        # The team the ticket ended with: the agent's, else the one its state names.
        agent_team = decided["agent_team"] if "agent_team" in decided.columns else column(state, "team", ids)
        closed = decided.assign(
            status=status,
            agent_team=agent_team.fillna(column(state, "team", ids)),
            csat=column(latest, "csat", ids),
            agent=column(latest, "assignee", ids)
            .fillna(column(state, "assignee", ids))
            .fillna(decided.get("agent", pd.Series(None, index=ids.index))),
        )
        closed = type_extension(closed[~closed["status"].isin(OPEN_STATUSES)].reset_index(drop=True))
    backlog = pd.DataFrame(columns=list(BACKLOG_COLUMNS))
    if open_ids:
        opened = states[states["ticket_id"].isin(open_ids)].reset_index(drop=True)
        last = (
            scored.drop_duplicates("ticket_id", keep="last").set_index("ticket_id")
            if not scored.empty
            else pd.DataFrame()
        )
        agent_values = decided.set_index("ticket_id") if not decided.empty else pd.DataFrame()
        ids = opened["ticket_id"]
        backlog = pd.DataFrame(
            {
                "ticket_id": ids,
                "status": opened["status"],
                "priority": column(agent_values, "agent_priority", ids).fillna(column(last, "priority", ids)),
                "team": opened["team"].astype(object).fillna(column(last, "team", ids)),
                "assignee": opened["assignee"],
                "created_at": pd.to_datetime(column(last, "created_at", ids), utc=True).fillna(
                    pd.to_datetime(opened["opened_at"], utc=True)
                ),
                "first_response_due": pd.to_datetime(column(last, "first_response_due", ids), utc=True),
                "resolution_due": pd.to_datetime(column(last, "resolution_due", ids), utc=True),
                "first_response_at": pd.to_datetime(column(agent_values, "first_response_at", ids), utc=True),
                "category": column(last, "category", ids),
            }
        )
    if backlog_now is not None:
        # The backlog's own figures, with what only this report reads (the answer time, category).
        extra = [name for name in ("ticket_id", "first_response_at", "category") if name in backlog.columns]
        backlog = backlog_now.merge(backlog[extra], on="ticket_id", how="left")
    return {
        "closed": closed,
        "open": backlog,
        "assignments": typed_assignments(moves) if not moves.empty else None,
        "promotions": None,
        # Repeat-issue cluster alerts (one row per episode, every worker's): store only.
        "cluster_alerts": store.cluster_alerts(),
    }


def figures_from_frames(
    frames: Mapping[str, Any],
    settings: OperationsSettings,
    *,
    source: str,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report's figures: closed tickets created in [since, until), the backlog as of `now`
    (its risk computed by `operations.backlog_stand_in` where the frame has none)."""
    moment = now or datetime.now(UTC)
    closed = frames["closed"]
    chosen = in_period(closed, since, until, column="created_at") if not closed.empty else closed
    if "status" in chosen.columns:  # an export's rows still open belong to the backlog
        chosen = chosen[~chosen["status"].isin(OPEN_STATUSES)].reset_index(drop=True)
    backlog = backlog_stand_in(frames["open"], chosen, moment, settings.levels)
    if chosen.empty and backlog.empty:
        raise EmptyReport(
            f"no closed ticket created from {describe_period(since, until)} and no open ticket in {source}: "
            f"nothing to report ({len(closed)} closed ticket(s) outside the period)"
        )
    figures = operations_figures(
        chosen,
        backlog,
        settings=settings,
        assignments=frames.get("assignments"),
        promotions=frames.get("promotions"),
        since=since,
        until=until,
        now=moment,
        cluster_alerts=frames.get("cluster_alerts"),
    )
    return {
        "title": "Support operations",
        "source": source,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "period": describe_period(since, until),
        "as_of": moment.isoformat(timespec="seconds"),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **figures,
    }


# ---------------------------------------------------------------------------------------------
# Plots


def _integer(axis: Any) -> None:
    """Ticks on whole numbers: counts of tickets."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _pct(value: float | None) -> float:
    return float("nan") if value is None else 100.0 * value


def _week_axis(axes: Axes, weeks: Sequence[Mapping[str, Any]], marks: Sequence[Mapping[str, Any]]) -> None:
    """Week labels, partial weeks hatched, promotions as dotted lines with their labels, and the
    model versions written where they change."""
    import matplotlib.transforms as transforms

    labels = [week["week"] for week in weeks]
    axes.set_xticks(range(len(weeks)), labels, rotation=45, ha="right", fontsize=8)
    axes.set_xlim(-0.5, len(weeks) - 0.5)
    axes.set_xlabel("week starting (Monday, UTC, of created_at)")
    top = transforms.blended_transform_factory(axes.transData, axes.transAxes)
    for index, week in enumerate(weeks):
        if week["partial"]:
            axes.axvspan(index - 0.5, index + 0.5, facecolor="none", edgecolor="#bbbbbb", hatch="//", lw=0)
    previous = None
    for index, week in enumerate(weeks):
        versions = (
            max(week["model_versions"], key=week["model_versions"].get) if week["model_versions"] else None
        )
        if versions and versions != previous:
            axes.text(
                index - 0.45, 0.02, versions.replace(";", "\n"), transform=top, fontsize=6, color="#555555"
            )
        previous = versions or previous
    position = {week["week"]: index for index, week in enumerate(weeks)}
    for mark in marks:
        if mark["week"] not in position:
            continue
        moment = pd.Timestamp(mark["at"])
        offset = (moment - pd.Timestamp(mark["week"], tz="UTC")) / pd.Timedelta(days=7)
        x = position[mark["week"]] - 0.5 + float(offset)
        axes.axvline(x, linestyle=":", color="#333333", lw=1)
        axes.text(
            x, 0.98, mark["label"], transform=top, rotation=90, va="top", ha="right", fontsize=7,
            color="#333333",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )  # fmt: skip


def _lines(
    axes: Axes,
    weeks: Sequence[Mapping[str, Any]],
    series: Mapping[str, Sequence[float | None]],
) -> None:
    """One line per series: solid between full weeks, dashed into a partial one, whose point
    is hollow."""
    partial = [week["partial"] for week in weeks]
    xs = list(range(len(weeks)))
    for number, (name, raw) in enumerate(series.items()):
        colour = PALETTE[number % len(PALETTE)]
        values = [float("nan") if value is None else float(value) for value in raw]
        full = [float("nan") if p else v for v, p in zip(values, partial, strict=True)]
        axes.plot(xs, values, "--", color=colour, lw=1, alpha=0.7)
        axes.plot(xs, full, "-", marker="o", markersize=4, color=colour, label=name)
        hollow = [(x, v) for x, v, p in zip(xs, values, partial, strict=True) if p]
        if hollow:
            axes.plot(
                [x for x, _ in hollow], [v for _, v in hollow], "o", markersize=5, color=colour,
                markerfacecolor="white",
            )  # fmt: skip


def plot_weekly(
    weeks: Sequence[Mapping[str, Any]],
    marks: Sequence[Mapping[str, Any]],
    series: Mapping[str, Sequence[float | None]],
    ylabel: str,
    *,
    percent: bool = False,
) -> str:
    figure = new_figure(8.0, 3.4)
    axes = figure.subplots()
    _lines(axes, weeks, series)
    if percent:
        axes.set_ylim(0, 105)
    else:
        axes.set_ylim(bottom=0)
        _integer(axes.yaxis)
    _week_axis(axes, weeks, marks)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return data_uri(figure)


def plot_backlog(backlog: Mapping[str, Any]) -> str:
    """Open tickets per team, stacked by priority."""
    rows = backlog["by_team"]
    figure = new_figure(8.0, 1.2 + 0.35 * len(rows))
    axes = figure.subplots()
    left = [0] * len(rows)
    for number, level in enumerate(backlog["priorities"]):
        counts = [row[level] for row in rows]
        colour = PRIORITY_COLOURS[min(number, len(PRIORITY_COLOURS) - 1)]
        axes.barh(range(len(rows)), counts, left=left, color=colour, label=level)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    axes.set_yticks(range(len(rows)), [row["team"] for row in rows], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("open tickets")
    _integer(axes.xaxis)
    axes.grid(axis="x", alpha=0.3)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return data_uri(figure)


def plot_breach(backlog: Mapping[str, Any]) -> str:
    """Per priority: open, at risk and already breached."""
    rows = backlog["by_priority"]
    figure = new_figure(8.0, 2.8)
    axes = figure.subplots()
    for offset, (key, colour) in enumerate(
        (("open", "#999999"), ("at_risk", "#E69F00"), ("breached", "#D55E00"))
    ):
        xs = [i + (offset - 1) * 0.27 for i in range(len(rows))]
        axes.bar(xs, [row[key] for row in rows], 0.27, color=colour, label=key.replace("_", " "))
    axes.set_xticks(range(len(rows)), [row["priority"] for row in rows])
    axes.set_ylabel("open tickets")
    _integer(axes.yaxis)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return data_uri(figure)


def bin_labels() -> list[str]:
    def text(hours: float) -> str:
        return f"{hours / 24:g}d" if hours >= 24 else f"{hours:g}h"

    edges = list(HOUR_BINS)
    return [
        f"{text(a)}-{text(b)}" if b != float("inf") else f"over {text(a)}"
        for a, b in itertools.pairwise(edges)
    ]


def plot_times(target: str, figures: Mapping[str, Any]) -> str:
    """The histogram of one time (hours from creation), one bar group per priority (each
    priority's share of its tickets, so a small priority stays readable)."""
    rows = [row for row in figures["by_priority"] if row["count"]]
    labels = bin_labels()
    figure = new_figure(8.0, 3.0)
    axes = figure.subplots()
    width = 0.8 / max(len(rows), 1)
    for number, row in enumerate(rows):
        shares = [100 * count / row["count"] for count in row["histogram"]]
        xs = [i - 0.4 + width * (number + 0.5) for i in range(len(labels))]
        axes.bar(
            xs,
            shares,
            width,
            color=PALETTE[number % len(PALETTE)],
            label=f"{row['priority']} ({row['count']})",
        )
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axes.set_ylabel("% of the priority's tickets")
    axes.set_xlabel(f"{target.replace('_', ' ')} time after creation")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return data_uri(figure)


def plot_bars(
    names: Sequence[str],
    groups: Mapping[str, Sequence[float]],
    xlabel: str,
    limit: int = 20,
    *,
    percent: bool = False,
) -> str:
    """Horizontal bars, stacked per group (closed and open, say), largest first."""
    shown = list(names)[:limit]
    figure = new_figure(8.0, 1.0 + 0.3 * len(shown))
    axes = figure.subplots()
    left = [0.0] * len(shown)
    for number, (name, values) in enumerate(groups.items()):
        counts = [float(value) for value in list(values)[:limit]]
        axes.barh(range(len(shown)), counts, left=left, color=PALETTE[number % len(PALETTE)], label=name)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    axes.set_yticks(range(len(shown)), shown, fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel(xlabel)
    if percent:
        axes.set_xlim(0, 100)
    else:
        _integer(axes.xaxis)
    axes.grid(axis="x", alpha=0.3)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return data_uri(figure)


def plots(figures: Mapping[str, Any]) -> dict[str, Any]:
    """Every plot the page shows; None where its section is empty."""
    weeks, marks = figures["weeks"], figures["promotions"]
    backlog, sla, times = figures["backlog"], figures["sla"], figures["times"]
    work, moves, requests, csat = (figures[k] for k in ("workload", "reassignment", "requests", "csat"))
    drawn: dict[str, Any] = dict.fromkeys(
        ("backlog", "breach", "sla", "first_response", "resolution", "teams_weekly", "agents", "teams",
         "reassignment", "bounces", "requests", "requests_weekly", "csat", "csat_teams"),
    )  # fmt: skip
    if backlog["empty_reason"] is None:
        drawn["backlog"], drawn["breach"] = plot_backlog(backlog), plot_breach(backlog)
    if weeks and sla["empty_reason"] is None:
        drawn["sla"] = plot_weekly(
            weeks,
            marks,
            {
                "first response": [_pct(row["first_response_attainment"]) for row in sla["weekly"]],
                "resolution": [_pct(row["resolution_attainment"]) for row in sla["weekly"]],
            },
            "% met the deadline",
            percent=True,
        )
    if times["empty_reason"] is None:
        for target in ("first_response", "resolution"):
            if times[target]["all"]["count"]:
                drawn[target] = plot_times(target, times[target])
    if work["empty_reason"] is None or work["teams"]:
        teams = work["teams"]
        drawn["teams"] = plot_bars(
            [row["team"] for row in teams],
            {"closed": [row["closed"] for row in teams], "open": [row["open"] for row in teams]},
            "tickets per team",
        )
        if weeks:
            drawn["teams_weekly"] = plot_weekly(
                weeks,
                marks,
                {row["team"]: row["weekly"] for row in teams[:6]},
                "closed tickets (by week created)",
            )
        if work["agents"]:
            agents = work["agents"]
            drawn["agents"] = plot_bars(
                [f"{row['agent']} ({row['team']})" for row in agents],
                {"closed": [row["closed"] for row in agents], "open": [row["open"] for row in agents]},
                "tickets per agent (the 20 busiest)",
            )
    if moves["empty_reason"] is None:
        if weeks:
            drawn["reassignment"] = plot_weekly(
                weeks, marks, {"reassigned": [_pct(row["rate"]) for row in moves["weekly"]]},
                "% of tickets moved", percent=True,
            )  # fmt: skip
        if moves["bounces"]:
            drawn["bounces"] = plot_bars(
                [f"{row['from']} -> {row['to']}" for row in moves["bounces"]],
                {"moves": [row["moves"] for row in moves["bounces"]]},
                "tickets moved from one team to another",
            )
    if requests["empty_reason"] is None:
        drawn["requests"] = plot_bars(
            [row["category"] for row in requests["top"]],
            {"tickets": [row["tickets"] for row in requests["top"]]},
            "closed tickets per category",
        )
        if weeks:
            top5 = [row["category"] for row in requests["top"][:5]]
            drawn["requests_weekly"] = plot_weekly(
                weeks, marks, {name: requests["weekly"][name] for name in top5}, "tickets (by week created)"
            )
    if csat["empty_reason"] is None:
        if weeks:
            drawn["csat"] = plot_weekly(
                weeks, marks, {"satisfied": [_pct(row["satisfied"]) for row in csat["weekly"]]},
                "% satisfied", percent=True,
            )  # fmt: skip
        drawn["csat_teams"] = plot_bars(
            [f"{row['team']} ({row['responses']})" for row in csat["teams"]],
            {"satisfied": [_pct(row["satisfied"]) for row in csat["teams"]]},
            "% satisfied, per team (responses)",
            percent=True,
        )
    return drawn


# ---------------------------------------------------------------------------------------------
# The page and the JSON file


def _hours(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} h"


def render_html(figures: Mapping[str, Any]) -> str:
    """The operations report as one HTML page (`report.render_page`)."""
    return render_page(
        "operations_report.html",
        {"percent": percent, "hours": _hours},
        figures=figures,
        plots=plots(figures),
        bins=bin_labels(),
        note=PARTIAL_NOTE,
    )


def write_report(figures: Mapping[str, Any], output: Path) -> Path:
    """The page at `output` and the figures beside it (`<name>.json`), each whole or not at all."""
    return write_pages(render_html(figures), figures, output)


def operations_report(
    settings: OperationsSettings,
    output: Path,
    *,
    input: Path | None,
    database_url: str,
    open_tickets: Path | None = None,
    assignments: Path | None = None,
    promotions: Path | None = None,
    promotion_moves: pd.DataFrame | None = None,
    labels: Mapping[str, Sequence[str]] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    backlog_now: Callable[[Store], pd.DataFrame] | None = None,
) -> tuple[dict[str, Any], Path]:
    """Figures from CSV files (`input`: the closed tickets) or else the store at `database_url`,
    written as the page `output` and its JSON; returns (figures, JSON path). `promotion_moves`:
    the registry's alias moves (`promote.alias_moves`), used when no `promotions` file is given;
    `backlog_now`: reads the store's open backlog (`urgency.backlog.read_backlog`)."""
    from urgency.store import Store, StoreError, check_schema, make_engine, redact, sqlite_path

    if input is not None:
        frames = frames_from_files(
            input,
            settings,
            open_tickets=open_tickets,
            assignments=assignments,
            promotions=promotions,
            labels=labels,
        )
        source = str(input)
    else:
        path = sqlite_path(database_url)
        if path is not None and not path.exists():
            raise StoreError(f"no store at {path}: the service has not run yet (or use --input closed.csv)")
        engine = make_engine(database_url)
        try:
            check_schema(engine)
            store = Store(engine)
            frames = frames_from_store(store, None if backlog_now is None else backlog_now(store))
        finally:
            engine.dispose()
        if promotions is not None:
            frames["promotions"] = read_promotions(promotions)
        source = redact(database_url)
    if frames.get("promotions") is None and promotion_moves is not None and not promotion_moves.empty:
        frames["promotions"] = promotion_moves
    figures = figures_from_frames(frames, settings, source=source, since=since, until=until, now=now)
    return figures, write_report(figures, output)

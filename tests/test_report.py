"""The agreement report: the period, the page and its JSON, `urgency report agreement`."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.test_notebooks import write_closed_tickets
from urgency.cli import app
from urgency.errors import StoreError
from urgency.report import (
    PeriodError,
    ReportSettings,
    agreement_report,
    figures_from_csv,
    parse_period,
    write_report,
)

runner = CliRunner()
SETTINGS = ReportSettings(
    labels={
        "urgency": ["high", "medium", "low"],
        "category": ["Hardware", "Access", "Purchase"],
        "sentiment": ["negative", "neutral", "positive"],
    },
    levels=["P1", "P2", "P3", "P4"],
    thresholds={"urgency": 0.6},
)


def test_a_date_until_includes_its_day() -> None:
    since, until = parse_period("2026-01-01", "2026-12-31")
    assert since == datetime(2026, 1, 1, tzinfo=UTC)
    assert until == datetime(2027, 1, 1, tzinfo=UTC)  # half-open: all of 31 December is in
    assert parse_period(None, "2026-03-02T12:30:00Z")[1] == datetime(2026, 3, 2, 12, 30, tzinfo=UTC)
    assert parse_period(None, None) == (None, None)
    with pytest.raises(PeriodError, match="since: '2026-13-01' is not an ISO 8601 date"):
        parse_period("2026-13-01", None)
    with pytest.raises(PeriodError, match="must not be before"):
        parse_period("2026-02-01", "2026-01-01")


def test_page_and_json_hold_the_same_figures(tmp_path: Path) -> None:
    figures = figures_from_csv(write_closed_tickets(tmp_path / "closed.csv"), SETTINGS)
    output = tmp_path / "out" / "agreement.html"
    json_path = write_report(figures, output)
    assert json_path == tmp_path / "out" / "agreement.json"
    written = json.loads(json_path.read_text())
    assert written["tickets"] == 60
    assert written["fields"]["urgency"]["used"] == 60
    # created over 21 days from Monday 2 March, 09:00: the last ones fall on Monday 23 March
    assert [week["value"] for week in written["trend"]] == [
        "2026-03-02",
        "2026-03-09",
        "2026-03-16",
        "2026-03-23",
    ]
    page = output.read_text()
    agreement = f"{100 * written['fields']['urgency']['agreement']:.1f}%"
    assert f"<td>{agreement}</td>" in page
    # Self-contained: every image is inline, nothing is fetched, nothing runs.
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) >= 1 + 5 + 1 + 5 + 1  # summary, 5 matrices, trend, 5 slices, SLA
    assert all(uri.startswith("data:image/svg+xml;base64,") for uri in images)
    assert "<svg" in base64.b64decode(images[0].split(",", 1)[1]).decode()
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page
    assert not list((tmp_path / "out").glob("*.partial"))


MATH_LIKE = ["$\\foo{$", "a $x^2$ plan", "$"]


def _with_math_like_values(path: Path) -> Path:
    """The closed tickets with plan, channel and language values matplotlib would read as math."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("plan", "channel", "language"):
        frame[column] = [MATH_LIKE[n % len(MATH_LIKE)] for n in range(len(frame))]
    frame.to_csv(path, index=False)
    return path


def test_a_value_that_looks_like_math_is_drawn_as_text(tmp_path: Path) -> None:
    """One ticket's plan "$\\foo{$" made the whole report fail (matplotlib's ParseFatalException)."""
    closed = _with_math_like_values(write_closed_tickets(tmp_path / "closed.csv"))
    figures = figures_from_csv(closed, SETTINGS)
    output = tmp_path / "agreement.html"
    write_report(figures, output)
    page = output.read_text()
    images = re.findall(r'<img src="data:image/svg\+xml;base64,([^"]+)"', page)
    drawn = "".join(base64.b64decode(image).decode() for image in images)
    assert "$\\foo{$" in drawn and "a $x^2$ plan" in drawn  # the values themselves, not math


def test_cli_reports_values_that_look_like_math(service_params: Path, tmp_path: Path) -> None:
    closed = _with_math_like_values(write_closed_tickets(tmp_path / "closed.csv"))
    output = tmp_path / "report.html"
    result = report("--params", str(service_params), "--input", str(closed), "--output", str(output))
    assert result.exit_code == 0, result.output
    assert output.exists()


def test_a_period_selects_tickets(tmp_path: Path) -> None:
    path = write_closed_tickets(tmp_path / "closed.csv")
    since, until = parse_period("2026-03-09", "2026-03-15")
    figures = figures_from_csv(path, SETTINGS, since=since, until=until)
    assert [week["value"] for week in figures["trend"]] == ["2026-03-09"]
    assert figures["period"] == "2026-03-09 to 2026-03-15"


def report(*args: str) -> object:
    return runner.invoke(app, ["report", "agreement", *args])


def test_cli_writes_page_and_json(service_params: Path, tmp_path: Path) -> None:
    closed = write_closed_tickets(tmp_path / "closed.csv")
    output = tmp_path / "report.html"
    result = report("--params", str(service_params), "--input", str(closed), "--output", str(output))
    assert result.exit_code == 0, result.output
    assert "60 decided tickets" in result.output and "urgency" in result.output
    assert output.exists() and (tmp_path / "report.json").exists()


# The report written with a file size limit: a full disk for every file it writes.
FULL_DISK = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))
from urgency.cli import app
sys.argv = ["urgency", *sys.argv[1:]]
app()
"""


def test_a_full_disk_leaves_the_older_report_and_no_partial_file(
    service_params: Path, tmp_path: Path
) -> None:
    """`ulimit -f 100` once left report.html.partial behind and exited 1 ("unexpected error")."""
    closed = write_closed_tickets(tmp_path / "closed.csv")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "report.html").write_text("older page\n")
    (folder / "report.json").write_text("{}\n")
    args = ["report", "agreement", "--params", str(service_params), "--input", str(closed)]
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, *args, "--output", str(folder / "report.html")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 10, done.stdout + done.stderr
    assert "report.html: cannot be written: File too large" in done.stdout + done.stderr
    assert (folder / "report.html").read_text() == "older page\n"
    assert (folder / "report.json").read_text() == "{}\n"
    assert sorted(path.name for path in folder.iterdir()) == ["report.html", "report.json"]


def test_cli_an_output_that_cannot_be_written_exits_10(service_params: Path, tmp_path: Path) -> None:
    closed = write_closed_tickets(tmp_path / "closed.csv")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    output = blocker / "report.html"
    result = report("--params", str(service_params), "--input", str(closed), "--output", str(output))
    assert result.exit_code == 10, result.output
    assert f"{output}: cannot be written" in result.output


def test_cli_refuses_an_empty_period_and_bad_input(service_params: Path, tmp_path: Path) -> None:
    closed = write_closed_tickets(tmp_path / "closed.csv")
    common = ["--params", str(service_params), "--output", str(tmp_path / "r.html")]
    empty = report(*common, "--input", str(closed), "--since", "2020-01-01", "--until", "2020-12-31")
    assert empty.exit_code == 8
    assert "no decided tickets from 2020-01-01 to 2020-12-31" in empty.output
    assert not (tmp_path / "r.html").exists()

    text = closed.read_text().splitlines()
    text[3] = text[3].replace("C-2,", "C-1,")
    closed.write_text("\n".join(text) + "\n")
    bad = report(*common, "--input", str(closed))
    assert bad.exit_code == 4 and "row 3, column ticket_id: 'C-1' appears more than once" in bad.output
    both = report(*common, "--input", str(closed), "--database-url", "sqlite:///x.db")
    assert both.exit_code == 2
    missing_store = report(*common, "--database-url", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing_store.exit_code == 7 and "the service has not run yet" in missing_store.output


def test_cli_reads_the_service_store(service_params: Path, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from serve.app import create_app
    from tests.serve_helpers import ALL, TICKET, settings

    database = f"sqlite:///{tmp_path / 'service.db'}"
    with TestClient(create_app(settings(service_params, database))) as client:
        assert client.post("/v1/score", json=TICKET, headers=ALL).status_code == 200
        event = {"ticket_id": TICKET["ticket_id"], "event_id": "e-1", "urgency": "high", "priority": "P1"}
        assert client.post("/v1/feedback", json=event, headers=ALL).status_code == 200
    output = tmp_path / "store_report.html"
    result = report("--params", str(service_params), "--database-url", database, "--output", str(output))
    assert result.exit_code == 0, result.output
    figures = json.loads(output.with_suffix(".json").read_text())
    assert figures["tickets"] == 1 and figures["fields"]["urgency"]["agreement"] == 1.0


def test_agreement_report_from_a_csv_or_the_store(tmp_path: Path) -> None:
    closed = write_closed_tickets(tmp_path / "closed.csv")
    output = tmp_path / "out" / "page.html"
    figures, json_path = agreement_report(
        SETTINGS, output, input=closed, database_url="sqlite:///unused.db", top=5
    )
    assert figures["tickets"] == 60 and json_path == tmp_path / "out" / "page.json"
    assert json.loads(json_path.read_text())["tickets"] == 60 and output.exists()
    # No CSV and no store yet: an error, and no empty database file is left behind.
    missing = tmp_path / "none.db"
    with pytest.raises(StoreError, match="the service has not run yet"):
        agreement_report(SETTINGS, output, input=None, database_url=f"sqlite:///{missing}")
    assert not missing.exists()

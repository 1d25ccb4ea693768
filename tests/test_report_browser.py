"""The agreement page in a real browser: Debian's headless Chromium, driven by playwright.

Every plot must load and show (an image the browser could not decode has naturalWidth 0),
nothing may log an error to the console or throw, and the page may fetch nothing but itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.test_notebooks import write_closed_tickets
from tests.test_report import SETTINGS
from urgency.report import figures_from_csv, write_report


def open_page(browser: Any, path: Path) -> tuple[Any, list[str], list[str]]:
    """The page loaded, with the console errors and uncaught exceptions it produced, and any
    request for something other than the page itself or inline data."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri(), wait_until="load")
    foreign = [url for url in requests if not (url.startswith("data:") or url == path.as_uri())]
    return page, problems, foreign


def test_the_page_shows_every_plot_without_errors(browser: Any, tmp_path: Path) -> None:
    output = tmp_path / "report.html"
    write_report(figures_from_csv(write_closed_tickets(tmp_path / "closed.csv"), SETTINGS), output)
    page, problems, foreign = open_page(browser, output)
    images = page.eval_on_selector_all(
        "img",
        "images => images.map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,"
        " shown: i.getBoundingClientRect().width}))",
    )
    assert len(images) >= 13
    broken = [image["alt"] for image in images if not (image["complete"] and image["width"] > 0)]
    assert not broken, f"plots the browser could not draw: {broken}"
    assert all(image["shown"] > 100 for image in images)  # laid out at a readable size
    headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
    assert headings == [
        "Agreement per head and for the priority",
        "Confusion matrices",
        "Trend over time",
        "Per slice",
        "SLA attainment by priority",
        "To review: confident disagreements",
    ]
    assert page.title().startswith("Model vs agent agreement")
    assert problems == []
    assert foreign == []
    page.close()


def test_the_checks_catch_a_broken_plot(browser: Any, tmp_path: Path) -> None:
    """The same checks see a plot that cannot be decoded and a script error."""
    output = tmp_path / "broken.html"
    output.write_text(
        '<html><body><img alt="bad" src="data:image/svg+xml;base64,bm90IGFuIHN2Zw==">'
        "<script>undefinedFunction()</script></body></html>"
    )
    page, problems, _ = open_page(browser, output)
    widths = page.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
    assert widths == [0]
    assert any("undefinedFunction" in problem for problem in problems)
    page.close()


def test_the_operations_page_shows_every_section_without_errors(browser: Any, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from tests.test_operations import SETTINGS as OPERATIONS
    from tests.test_operations import write_files
    from urgency.operations_report import operations_report

    paths = write_files(tmp_path)
    output = tmp_path / "operations.html"
    operations_report(
        OPERATIONS,
        output,
        input=paths["closed"],
        database_url="sqlite:///unused.db",
        open_tickets=paths["open"],
        assignments=paths["assignments"],
        now=datetime(2026, 3, 23, 12, tzinfo=UTC),
    )
    page, problems, foreign = open_page(browser, output)
    images = page.eval_on_selector_all(
        "img",
        "images => images.map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,"
        " shown: i.getBoundingClientRect().width}))",
    )
    assert len(images) >= 12
    broken = [image["alt"] for image in images if not (image["complete"] and image["width"] > 0)]
    assert not broken, f"plots the browser could not draw: {broken}"
    assert all(image["shown"] > 100 for image in images)
    headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
    assert headings == [
        "Open backlog",
        "Breach risk",
        "SLA attainment over time",
        "Response and resolution times",
        "Workload per team and agent",
        "Reassignments",
        "Common requests",
        "Customer satisfaction",
        "Repeat-issue clusters",
        "Model versions and promotions",
    ]
    for heading in page.query_selector_all("h2"):
        assert heading.is_visible()
    # The partial last week is set apart in every weekly table, and a promotion is listed.
    partial = page.eval_on_selector_all("tr.partial td:first-child", "cells => cells.map(c => c.textContent)")
    assert partial and set(partial) == {"2026-03-23 (partial)"}
    assert page.get_by_text("urgency v2 (first scored)").is_visible()
    assert page.title().startswith("Support operations")
    assert problems == []
    assert foreign == []
    page.close()

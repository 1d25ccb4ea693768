"""/docs in a real browser (Debian's headless Chromium) with no way out of loopback: the Swagger
UI files come from the service itself, so the page works offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.serve_helpers import running_server


def open_offline(browser: Any, url: str, base: str) -> tuple[Any, list[str], list[str]]:
    """The page at `url` with every request outside `base` refused (as on a machine without
    internet); returns it with the refused URLs and the page's errors."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    refused: list[str] = []
    problems: list[str] = []

    def only_the_service(route: Any) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_service)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.goto(url, wait_until="load")
    return page, refused, problems


def test_docs_page_renders_offline(browser: Any, service_params: Path, tmp_path: Path) -> None:
    with running_server(service_params, f"sqlite:///{tmp_path / 'service.db'}") as base:
        page, refused, problems = open_offline(browser, f"{base}/docs", base)
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        paths = page.eval_on_selector_all(".opblock-summary-path", "nodes => nodes.map(n => n.textContent)")
        assert {"/v1/score", "/v1/feedback"} <= set(paths)
        assert refused == [] and problems == []
        page.close()

        assert httpx.get(f"{base}/redoc").status_code == 404  # it would fetch a logo from redoc.ly

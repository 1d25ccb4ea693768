"""Every notebook in notebooks/ runs from top to bottom against a tiny setup, so none can rot.

Each notebook reads two variables and falls back to the demo's files without them:
- URGENCY_NOTEBOOK_PARAMS: a params file (here: the tiny trained models plus a rules file);
- URGENCY_NOTEBOOK_CLOSED_TICKETS: a closed-tickets CSV (docs/reports.md; here: a small one
  written below).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PROJECT

NOTEBOOKS = sorted((PROJECT / "notebooks").glob("*.ipynb"))


def write_closed_tickets(path: Path, rows: int = 60, seed: int = 7) -> Path:
    """A small closed-tickets CSV in the labels of the tiny setup: the model right about 70% of
    the time, two slices, three weeks, SLA times around the deadlines."""
    rng = np.random.default_rng(seed)
    created = pd.Timestamp("2026-03-02T09:00:00Z") + pd.to_timedelta(rng.integers(0, 21 * 24, rows), unit="h")
    frame = pd.DataFrame({"ticket_id": [f"C-{n}" for n in range(rows)], "created_at": created})
    frame["subject"] = [f"ticket {n}" for n in range(rows)]
    choices = {
        "urgency": ["high", "medium", "low"],
        "category": ["Hardware", "Access", "Purchase"],
        "sentiment": ["negative", "neutral", "positive"],
        "priority": ["P1", "P2", "P3", "P4"],
        "team": ["desk", "triage"],
    }
    for name, labels in choices.items():
        agent = rng.choice(labels, rows)
        right = rng.random(rows) < 0.7
        frame[name] = np.where(right, agent, rng.choice(labels, rows))
        frame[f"agent_{name}"] = agent
        if name in ("urgency", "category", "sentiment"):
            frame[f"{name}_confidence"] = np.round(rng.uniform(0.34, 1.0, rows), 3)
    frame["needs_human_triage"] = frame["urgency_confidence"] < 0.6
    frame["first_response_due"] = created + pd.Timedelta(hours=4)
    frame["resolution_due"] = created + pd.Timedelta(hours=24)
    frame["first_response_at"] = created + pd.to_timedelta(rng.uniform(0.5, 6, rows), unit="h")
    frame["resolved_at"] = created + pd.to_timedelta(rng.uniform(2, 30, rows), unit="h")
    frame["plan"] = rng.choice(["free", "enterprise"], rows)
    frame["channel"] = rng.choice(["email", "chat"], rows)
    frame["language"] = "en"
    for column in ("created_at", "first_response_due", "resolution_due", "first_response_at", "resolved_at"):
        frame[column] = frame[column].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def notebook_env(service_params: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("notebooks")
    return {
        "URGENCY_NOTEBOOK_PARAMS": str(service_params),
        "URGENCY_NOTEBOOK_CLOSED_TICKETS": str(write_closed_tickets(folder / "closed_tickets.csv")),
        "MPLBACKEND": "Agg",
        "HF_HUB_OFFLINE": "1",
        "URGENCY_NOTEBOOK_OUTPUT": str(folder / "output"),
    }


def _run(path: Path, env: dict[str, str]) -> Any:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    # The kernel inherits this process's environment: the variables point it at the tiny setup.
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        client = NotebookClient(
            notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(path.parent)}}
        )
        client.execute()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return notebook


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_top_to_bottom(path: Path, notebook_env: dict[str, str]) -> None:
    notebook = _run(path, notebook_env)
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors  # execute() raises on a failing cell; this guards allow-errors cells too


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    with_outputs = [
        number
        for number, cell in enumerate(notebook.cells, start=1)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not with_outputs, f"{path.name}: clear the outputs of cell(s) {with_outputs} before committing"


def test_the_closed_tickets_fixture_has_every_documented_column(tmp_path: Path) -> None:
    frame = pd.read_csv(write_closed_tickets(tmp_path / "closed.csv"))
    for name in ("urgency", "category", "sentiment", "priority", "team"):
        assert {name, f"agent_{name}"} <= set(frame.columns)
        assert 0.4 < (frame[name] == frame[f"agent_{name}"]).mean() < 1.0
    assert frame["ticket_id"].is_unique


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs_for_a_helpdesk_without_sentiment(
    path: Path, two_heads: dict[str, Any], tmp_path: Path
) -> None:
    """Urgency and category models only; no closed-tickets file, so the agreement notebook
    simulates one with the champions that exist."""
    env = {
        "URGENCY_NOTEBOOK_PARAMS": str(two_heads["params_path"]),
        "URGENCY_NOTEBOOK_CLOSED_TICKETS": str(tmp_path / "closed_tickets.csv"),
        "MPLBACKEND": "Agg",
        "HF_HUB_OFFLINE": "1",
        "URGENCY_NOTEBOOK_OUTPUT": str(tmp_path / "output"),
    }
    _run(path, env)  # execute() raises on a failing cell

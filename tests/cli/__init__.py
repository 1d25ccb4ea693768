"""Tests of `urgency.cli`, one module per command group (tests/cli/test_<group>.py)."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from urgency.cli import app

runner = CliRunner()


def invoke(*args: str) -> Any:
    """Run `urgency ARGS` in this process; exceptions the app does not handle fail the test."""
    return runner.invoke(app, list(args), catch_exceptions=False)

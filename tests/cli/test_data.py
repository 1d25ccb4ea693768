"""`urgency validate-data` (urgency.cli.data)."""

from __future__ import annotations

from pathlib import Path

from tests.cli import invoke
from tests.test_data import _corrupt


def test_validate_data_ok(params_file: Path) -> None:
    result = invoke("validate-data", "--params", str(params_file))
    assert result.exit_code == 0, result.output
    assert "180 tickets valid" in result.output


def test_validate_data_reports_problems_with_exit_code_4(params_file: Path, sources: dict[str, Path]) -> None:
    _corrupt(sources["urgency"])
    result = invoke("validate-data", "--params", str(params_file))
    assert result.exit_code == 4
    assert "value not in labels.urgency.mapping: 2 row(s), e.g. rows 5, 7" in result.output
    assert "Traceback" not in result.output

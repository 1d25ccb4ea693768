"""The app as a whole (`urgency.cli`): the command list, exit codes, the console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import invoke


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("validate-data", "train", "evaluate", "predict", "export-models"):
        assert command in result.output


def test_params_error_exit_code_3(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("data: {sources: []}\nheads: {category: {labels: [a, b]}}\nmlfow: {}\n")
    result = invoke("validate-data", "--params", str(bad))
    assert result.exit_code == 3
    assert "mlfow: unknown key" in result.output
    assert "data.sources" in result.output


@pytest.mark.slow
def test_console_script_is_installed_and_exits_cleanly(tmp_path: Path) -> None:
    urgency = Path(sys.executable).parent / "urgency"
    done = subprocess.run(
        [str(urgency), "validate-data", "--params", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 3
    assert "params file not found" in done.stderr and "Traceback" not in done.stderr


def test_help_loads_no_heavy_library() -> None:
    # `urgency --help` stays fast: models, data frames and the registry load inside commands.
    script = """
import sys
from urgency.cli import main
sys.argv = ["urgency", "--help"]
try:
    main()
except SystemExit:
    pass
print([name for name in ("mlflow", "pandas", "sklearn", "sqlalchemy", "serve") if name in sys.modules])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"

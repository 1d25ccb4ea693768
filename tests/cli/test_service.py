"""`urgency serve / db upgrade / api-key` (urgency.cli.service); the commands that run without
the service do not import it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli import runner
from urgency.cli import app


def test_serve_refuses_production_without_keys(params_file: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["serve", "--params", str(params_file), "--database-url", f"sqlite:///{tmp_path / 's.db'}"],
        env={"URGENCY_MODE": "production", "URGENCY_API_KEYS": "[]"},
    )
    assert result.exit_code == 3 and "refusing to start" in result.output
    assert not (tmp_path / "s.db").exists()  # refused before the store was touched


def test_batch_commands_do_not_import_the_service(params_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    script = f"""
import sys
from typer.testing import CliRunner
from urgency.cli import app
run = CliRunner().invoke
assert run(app, ["db", "upgrade", "-p", {str(params_file)!r}, "--database-url", {url!r}]).exit_code == 0
assert run(app, ["api-key", "--name", "n", "--scope", "score"]).exit_code == 0
print(sorted(name for name in sys.modules if name == "serve" or name.startswith("serve.")))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"

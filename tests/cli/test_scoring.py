"""`urgency check-incidents` (urgency.cli.scoring); predict, score, validate-rules and
check-incidents' figures are tested with their library modules (test_predict, test_scoring_files,
test_distributed, test_incidents)."""

from __future__ import annotations

from tests.cli import invoke
from tests.conftest import PROJECT


def test_check_incidents_needs_the_log() -> None:
    # No default: the shared log lives outside the project, so it is named on the command line.
    result = invoke("check-incidents", "--params", str(PROJECT / "params.yaml"))
    assert result.exit_code == 2 and "Missing option '--log'" in result.output

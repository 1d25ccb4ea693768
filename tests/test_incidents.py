from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import PROJECT
from urgency.cli import app
from urgency.errors import DataValidationError, InputError
from urgency.incidents import check_incidents, final_states, read_incident_log
from urgency.rules import load_rules

# Several rows per incident; the last one is the final state. INC3's priority disagrees with
# the matrix (impact 2 x urgency 2 is P3), INC4 has a code the matrix does not know.
EVENTS = pd.DataFrame(
    {
        "number": ["INC1", "INC2", "INC1", "INC3", "INC2", "INC4"],
        "impact": ["2 - Medium", "1 - High", "1 - High", "2", "1 - High", "5"],
        "urgency": ["2 - Medium", "1 - High", "1 - High", "2", "2 - Medium", "1"],
        "priority": ["3 - Moderate", "1 - Critical", "1 - Critical", "2", "2 - High", "1"],
        "made_sla": ["true", "true", "false", "True", "true", "false"],
    }
)


def test_last_row_is_the_final_state() -> None:
    final = final_states(EVENTS)
    assert final["number"].tolist() == ["INC1", "INC3", "INC2", "INC4"]
    assert final.set_index("number").loc["INC2", "urgency"] == "2 - Medium"


def test_matrix_agreement_and_sla_attainment() -> None:
    report = check_incidents(EVENTS, load_rules(PROJECT / "rules.yaml"))
    assert (report.events, report.incidents, report.compared, report.unmapped) == (6, 4, 3, 1)
    assert report.agreement == pytest.approx(2 / 3)
    wrong = report.matrix[report.matrix["agreeing"] < report.matrix["incidents"]]
    assert wrong[["impact", "urgency", "recorded", "expected"]].values.tolist() == [
        ["medium", "medium", "P2", "P3"]
    ]
    sla = report.sla.set_index("priority")
    assert sla.loc["P1", "incidents"] == 2 and sla.loc["P1", "attainment"] == 0.0  # INC1 and INC4 missed
    assert sla.loc["P2", "attainment"] == 1.0


def test_bad_logs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_incident_log(tmp_path / "none.csv.gz")
    path = tmp_path / "log.csv"
    EVENTS.drop(columns=["made_sla"]).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match="made_sla"):
        read_incident_log(path)


def test_check_incidents_command(tmp_path: Path) -> None:
    path = tmp_path / "log.csv.gz"
    EVENTS.to_csv(path, index=False)
    runner = CliRunner()
    params = str(PROJECT / "params.yaml")
    failed = runner.invoke(app, ["check-incidents", "--params", params, "--log", str(path)])
    assert failed.exit_code == 1 and "agreement 66.67% on 3 incidents" in failed.output
    passed = runner.invoke(
        app, ["check-incidents", "--params", params, "--log", str(path), "--min-agreement", "0.6"]
    )
    assert passed.exit_code == 0, passed.output
    assert "SLA attainment" in passed.output

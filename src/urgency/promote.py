"""Model choice: compare the model families per head and move the champion alias.

Every registered version carries its validation and test macro-F1 as tags (set by
`urgency.train`). A promotion points the champion alias at a version and records who, when and
why as tags on that version. Automatic promotion compares validation macro-F1 only (the test
split stays out of every decision) and only between versions evaluated on the same validation
rows (same dataset digest).
"""

from __future__ import annotations

import getpass
import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from urgency.config import FAMILIES
from urgency.errors import InputError, ModelNotFoundError
from urgency.tracking import alias_version, dataset_digest


@dataclass(frozen=True)
class Decision:
    head: str
    name: str
    candidate: str
    champion: str | None  # the version the alias pointed at before
    candidate_f1: float | None
    champion_f1: float | None
    promoted: bool
    reason: str


def _version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    try:
        return client.get_model_version(name, version)
    except MlflowException:
        raise ModelNotFoundError(f"no model version {name} v{version} in the registry") from None


def _validation_f1(version: ModelVersion) -> float | None:
    value = version.tags.get("validation_macro_f1")
    return float(value) if value is not None else None


def promote(
    client: MlflowClient, name: str, version: str, alias: str, *, reason: str, by: str | None = None
) -> str | None:
    """Point `alias` at `version` and tag the version with who, when and why. Returns the
    version the alias pointed at before (None if it was not set)."""
    _version(client, name, version)
    previous = alias_version(client, name, alias)
    client.set_registered_model_alias(name, alias, version)
    tags = {
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "promoted_by": by or getpass.getuser(),
        "promotion_reason": reason,
        "replaced_version": str(previous.version) if previous is not None else "",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return str(previous.version) if previous is not None else None


def promote_if_better(
    client: MlflowClient, head: str, name: str, version: str, alias: str, *, margin: float, by: str
) -> Decision:
    """Promote `version` when its validation macro-F1 beats the champion's by `margin` or more."""
    candidate = _version(client, name, version)
    candidate_f1 = _validation_f1(candidate)
    champion = alias_version(client, name, alias)

    def decide(promoted: bool, reason: str) -> Decision:
        if promoted:
            promote(client, name, version, alias, reason=reason, by=by)
        return Decision(
            head=head,
            name=name,
            candidate=str(version),
            champion=str(champion.version) if champion is not None else None,
            candidate_f1=candidate_f1,
            champion_f1=_validation_f1(champion) if champion is not None else None,
            promoted=promoted,
            reason=reason,
        )

    if champion is None:
        return decide(True, "no champion yet")
    if str(champion.version) == str(version):
        return decide(False, "already the champion")
    champion_f1 = _validation_f1(champion)
    if candidate_f1 is None or champion_f1 is None:
        return decide(False, "a validation_macro_f1 tag is missing: promote by hand")
    if dataset_digest(client, candidate.run_id, "validation") != dataset_digest(
        client, champion.run_id, "validation"
    ):
        return decide(False, "evaluated on different validation rows than the champion: promote by hand")
    gain = candidate_f1 - champion_f1
    if gain >= margin:
        return decide(
            True,
            f"validation macro-F1 {candidate_f1:.4f} beats v{champion.version} ({champion_f1:.4f}) "
            f"by {gain:+.4f} >= margin {margin}",
        )
    return decide(
        False, f"validation macro-F1 {candidate_f1:.4f} vs champion {champion_f1:.4f}: gain < {margin}"
    )


# ---------------------------------------------------------------------------------------------
# Comparison of the families


def latest_by_family(client: MlflowClient, name: str) -> dict[str, ModelVersion]:
    """The newest registered version of each model family under `name`."""
    latest: dict[str, ModelVersion] = {}
    for version in client.search_model_versions(f"name = '{name}'"):
        family = version.tags.get("family", "baseline")
        if family not in latest or int(version.version) > int(latest[family].version):
            latest[family] = version
    return latest


def compare(client: MlflowClient, model_names: dict[str, str], alias: str) -> pd.DataFrame:
    """One row per head and family (its newest version), plus the champion when it is an older
    version: the figures that decide which model to use.

    Figures come from each version's training run, where they were measured on the head's test
    split through `urgency.predict`. `same test rows` says whether the test split's digest
    matches the newest baseline's, i.e. whether the figures are comparable."""
    rows: list[dict[str, Any]] = []
    for head, name in model_names.items():
        versions = latest_by_family(client, name)
        if not versions:
            continue
        champion = alias_version(client, name, alias)
        reference = dataset_digest(
            client, (versions.get("baseline") or next(iter(versions.values()))).run_id, "testing"
        )
        shown = [versions[f] for f in FAMILIES if f in versions]
        shown += [versions[f] for f in sorted(set(versions) - set(FAMILIES))]
        if champion is not None and str(champion.version) not in {str(v.version) for v in shown}:
            shown.append(champion)
        for version in shown:
            run = client.get_run(version.run_id)
            metrics, run_params = run.data.metrics, run.data.params
            rows.append(
                {
                    "head": head,
                    "family": version.tags.get("family", "baseline"),
                    "version": int(version.version),
                    "champion": champion is not None and str(champion.version) == str(version.version),
                    "train rows": int(run_params.get("train_rows", metrics.get("rows_training", 0))),
                    "validation macro-F1": metrics.get("validation_macro_f1"),
                    "test macro-F1": metrics.get("test_macro_f1"),
                    "test accuracy": metrics.get("test_accuracy"),
                    "test ECE": metrics.get("test_ece"),
                    "test rows": int(metrics.get("rows_testing", 0)),
                    "train seconds": metrics.get("train_seconds"),
                    "tickets/s": metrics.get("test_tickets_per_second"),
                    "same test rows": dataset_digest(client, version.run_id, "testing") == reference,
                }
            )
    return pd.DataFrame(rows)


def comparison_markdown(table: pd.DataFrame) -> str:
    """The comparison as a markdown table (figures rounded for reading)."""
    if table.empty:
        return "No registered models to compare.\n"
    shown = table.copy()
    for column in ("validation macro-F1", "test macro-F1", "test accuracy", "test ECE"):
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    for column in ("train seconds", "tickets/s"):
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:,.0f}")
    shown["champion"] = shown["champion"].map({True: "yes", False: ""})
    shown["same test rows"] = shown["same test rows"].map({True: "yes", False: "NO"})
    return shown.to_markdown(index=False) + "\n"


def log_comparison(table: pd.DataFrame, experiment_id: str, output: Path | None = None) -> str:
    """Log the comparison (markdown and JSON) as artifacts of a `compare` run; optionally also
    write the markdown to `output`. Returns the run id."""
    import mlflow

    markdown = comparison_markdown(table)
    if output is not None:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(markdown)
        except OSError as error:
            raise InputError(f"cannot write the comparison to {output}: {error}") from None
    with mlflow.start_run(experiment_id=experiment_id, run_name="compare") as run:
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "model_comparison.md").write_text(markdown)
            (Path(folder) / "model_comparison.json").write_text(
                json.dumps(table.to_dict(orient="records"), indent=2, default=str)
            )
            mlflow.log_artifacts(folder)
        for row in table.to_dict(orient="records"):
            if pd.notna(row["test macro-F1"]):
                mlflow.log_metric(f"{row['head']}.{row['family']}.test_macro_f1", row["test macro-F1"])
    return run.info.run_id

"""The model families side by side: the newest version of each family per head (a distilled
`student` too, with its gap to its teacher), next to the champion, with their validation and test
figures and speed (`urgency compare`, docs/model_comparison.md), and each sentiment model on the
hand-labelled support-sentiment check (`urgency.hand_labelled`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from urgency.config import FAMILIES, MlflowParams
from urgency.errors import OutputError
from urgency.models import registry_client
from urgency.tracking import alias_version, dataset_digest, use_tracking

if TYPE_CHECKING:
    from urgency.hand_labelled import LabelledSet

# The hand-labelled check's columns: filled for sentiment models when the set is given.
SUPPORT_COLUMNS = ("support sentiment acc.", "support predicted negative")

# (head, registered name, version) -> extra columns of that version's row.
VersionCheck = Callable[[str, str, ModelVersion], dict[str, Any]]


def latest_by_family(client: MlflowClient, name: str) -> dict[str, ModelVersion]:
    """The newest registered version of each model family under `name`."""
    latest: dict[str, ModelVersion] = {}
    for version in client.search_model_versions(f"name = '{name}'"):
        family = version.tags.get("family", "baseline")
        if family not in latest or int(version.version) > int(latest[family].version):
            latest[family] = version
    return latest


def compare(
    client: MlflowClient, model_names: dict[str, str], alias: str, check: VersionCheck | None = None
) -> pd.DataFrame:
    """One row per head and family (its newest version), plus the champion when it is an older
    version: the figures that decide which model to use.

    Figures come from each version's training run, where they were measured on the head's test
    split through `urgency.predict`. `same test rows` says whether the test split's digest
    matches the newest baseline's, i.e. whether the figures are comparable. `check` adds
    columns measured on the version itself (`support_sentiment_check`)."""
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
                    # A distilled student's test macro-F1 less its teacher's (`urgency distill`).
                    "test gap to teacher": metrics.get("test_macro_f1_gap_to_teacher"),
                    **(check(head, name, version) if check is not None else {}),
                }
            )
    return pd.DataFrame(rows)


def support_sentiment_check(checked: LabelledSet, tracking_uri: str) -> VersionCheck:
    """A `compare` check: each sentiment version, loaded (digests verified) and run on the
    hand-labelled support-sentiment set: accuracy negative-vs-not and the share it predicts
    negative. Other heads get empty cells."""
    from urgency.hand_labelled import version_sentiment_check
    from urgency.models import load_version, registry_client

    client = registry_client(tracking_uri)

    def check(head: str, name: str, version: ModelVersion) -> dict[str, Any]:
        if head != "sentiment":
            return dict.fromkeys(SUPPORT_COLUMNS)
        result = version_sentiment_check(
            client, version, checked, lambda: load_version(head, name, version, tracking_uri)
        )
        return {
            SUPPORT_COLUMNS[0]: result["negative_vs_not_accuracy"],
            SUPPORT_COLUMNS[1]: result["share_predicted_negative"],
        }

    return check


def comparison_markdown(table: pd.DataFrame) -> str:
    """The comparison as a markdown table (figures rounded for reading)."""
    if table.empty:
        return "No registered models to compare.\n"
    shown = table.copy()
    numbers = ("validation macro-F1", "test macro-F1", "test accuracy", "test ECE", "test gap to teacher")
    for column in (*numbers, *SUPPORT_COLUMNS):
        if column in shown:
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
            raise OutputError(f"cannot write the comparison to {output}: {error}") from None
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
            if pd.notna(row.get(SUPPORT_COLUMNS[0])):
                mlflow.log_metric(
                    f"{row['head']}.{row['family']}.support_sentiment_accuracy", row[SUPPORT_COLUMNS[0]]
                )
    return run.info.run_id


def compare_and_log(
    params: MlflowParams,
    heads: Sequence[str],
    output: Path | None = None,
    support_sentiment: LabelledSet | None = None,
) -> tuple[pd.DataFrame, str]:
    """`compare` the heads' registered models on the configured tracking server and log the
    table as a `compare` run (and to `output`); with `support_sentiment` (the hand-labelled set)
    the sentiment models are also measured on it. Returns (table, run id)."""
    experiment_id = use_tracking(params.tracking_uri, params.experiment, params.artifact_location)
    names = {head: params.model_name(head) for head in heads}
    check = support_sentiment_check(support_sentiment, params.tracking_uri) if support_sentiment else None
    table = compare(registry_client(params.tracking_uri), names, params.champion_alias, check)
    return table, log_comparison(table, experiment_id, output)

"""Retraining on new ticket history, promoted only through a gate.

`retrain` validates the new history files, merges them with the configured training data and
the agents' corrections from the service's store, reports drift against the training data,
holds out the newest slice of the new history, trains a challenger on everything else, scores
champion and challenger on the held-out slice through `urgency.predict`, and moves the champion
alias only for heads whose challenger passes the gate. Everything lands in one MLflow run named
`retrain` (a `train` run with the drift report, the held-out figures and the gate's verdicts).

History format: the export a source of params `data.sources` describes (`--source NAME`, or the
only source), labels mapped by its value maps; with several sources and none named, the
canonical columns (`urgency.history`). Drift compares the history with the data of the sources
like it (`drift_reference`), never with every source mixed.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from urgency.config import HEADS, Params, Source
from urgency.data import LoadResult, load_configured
from urgency.drift import DriftReport, Thresholds, drift_report
from urgency.errors import DataValidationError, ModelNotFoundError
from urgency.evaluate import classification_report
from urgency.history import apply_corrections, corrections_frame, load_history, read_decisions, text_keys
from urgency.promote import Gate, gate
from urgency.text import ticket_text
from urgency.tickets import choose_source

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Held-out slice


def newest_slice(created_at: pd.Series, fraction: float) -> pd.Series:
    """True for the newest `fraction` of rows (at least one); tickets created at the same moment
    as the first held-out one are held out with it, so the cut is a point in time."""
    if created_at.empty:
        return pd.Series(False, index=created_at.index)
    ordered = created_at.sort_values(kind="stable")
    count = max(1, math.ceil(len(ordered) * fraction))
    return created_at >= ordered.iloc[len(ordered) - count]


def holdout_report(
    model: Any, rows: pd.DataFrame, head: str, labels: Sequence[str], majority: str, max_text_chars: int
) -> dict[str, Any]:
    """A head model's figures on held-out rows, predicted through `urgency.predict`; macro-F1
    averages the labels that occur in the rows (a label nobody used cannot be judged)."""
    from urgency.predict import predict_proba

    truth = rows[head].astype(str)
    present = [label for label in labels if label in set(truth)]
    probabilities = predict_proba(model, ticket_text(rows["subject"], rows["body"], max_text_chars))
    return classification_report(truth, probabilities, present, majority)


# ---------------------------------------------------------------------------------------------
# Drift reference


def _fields(source: Source) -> set[str]:
    """What a source's rows carry besides body and labels: a subject, a language column (a
    constant is no distribution), meta fields."""
    columns = source.columns
    return {name for name in ("subject", "language") if getattr(columns, name)} | set(columns.meta)


def drift_reference(
    sources: Sequence[Source], history: pd.DataFrame, readers: Sequence[Source], described_by: Source | None
) -> list[str]:
    """The configured sources whose data the new history is compared with: like with like.

    The source that described the history (`--source`), if any; else the sources whose labels
    are for the same heads as the history's, narrowed to those that also carry every field the
    history does (when any do); else those sharing a head; else all. Mixing other sources in
    (tweets into support tickets) makes language, length and vocabulary drift where none is."""
    if described_by is not None:
        return [described_by.name]
    heads = {head for head in HEADS if head in history.columns and history[head].notna().any()}
    fields = set().union(*(_fields(reader) for reader in readers)) if readers else set()
    same = [source for source in sources if set(source.labels) == heads]
    if same:
        alike = [source for source in same if fields <= _fields(source)]
        return [source.name for source in alike or same]
    sharing = [source.name for source in sources if set(source.labels) & heads]
    return sharing or [source.name for source in sources]


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class HeadOutcome:
    head: str
    champion_version: str
    challenger_version: str
    gate: Gate
    promoted: bool
    champion_report: dict[str, Any]
    challenger_report: dict[str, Any]


@dataclass
class RetrainResult:
    run_id: str
    drift: DriftReport
    heads: dict[str, HeadOutcome]
    counts: dict[str, int]
    history_sources: list[Source] = field(default_factory=list)
    # The configured sources drift compared the history with.
    drift_reference: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "counts": self.counts,
            "drifted": self.drift.drifted,
            "drift_reference": self.drift_reference,
            "heads": {
                head: {
                    "champion_version": o.champion_version,
                    "challenger_version": o.challenger_version,
                    "promoted": o.promoted,
                    "passed": o.gate.passed,
                    "reasons": o.gate.reasons,
                    **o.gate.metrics(),
                }
                for head, o in self.heads.items()
            },
            "history_sources": [
                s.model_dump(mode="json", exclude_defaults=True) for s in self.history_sources
            ],
        }


def retrain(
    params: Params,
    histories: Sequence[Path],
    *,
    heads: Sequence[str] | None = None,
    family: str | None = None,
    source: str | None = None,
    decisions: pd.DataFrame | None = None,
    by: str = "urgency retrain",
    params_path: Path | None = None,
    code_folder: Path | None = None,
    output: Path | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> RetrainResult:
    """The whole loop (see the module's docstring). `decisions` is `Store.decisions()` of the
    service's store (None: no corrections). Heads default to those whose label the held-out
    slice carries. `source` names the params source that describes the history files (None:
    the only source, else the canonical layout). Nothing is trained or registered when the
    history is not valid."""
    import mlflow

    from urgency import tracking
    from urgency.models import (
        HeadRef,
        ModelSource,
        load_models,
        load_registered_models,
        registry_client,
        resolve_registry,
    )
    from urgency.promote import AliasLog, promote
    from urgency.train import train

    def stage(text: str) -> None:
        if on_stage:
            on_stage(text)
        else:
            log.info(text)

    stage(f"validating {len(histories)} history file(s)")
    described_by = choose_source(params.data.sources, source)
    history, history_sources = load_history(histories, params, described_by)
    previous = load_configured(params.data)
    corrections, ignored = corrections_frame(decisions if decisions is not None else pd.DataFrame(), params)
    max_chars = params.data.max_text_chars
    merged = apply_corrections(previous.tickets, history.tickets, corrections, max_text_chars=max_chars)

    held = newest_slice(merged.history["created_at"], params.retrain.holdout_fraction)
    holdout = merged.history[held]
    labelled = [head for head in HEADS if holdout[head].notna().any()]
    if heads is None:
        # Not asked for: the labelled heads that have a champion (a head never trained - e.g.
        # no sentiment labels at all - has nothing to gate against; `models.resolve` decides).
        try:
            champion_heads = resolve_registry(
                None,
                tracking_uri=params.mlflow.tracking_uri,
                model_names={head: params.mlflow.model_name(head) for head in HEADS},
                alias=params.mlflow.champion_alias,
            ).describe()
        except ModelNotFoundError:
            champion_heads = {}  # no champion at all: the check below names the first head
        # None of them has one: keep them, so the champion check below names the first.
        heads = [head for head in labelled if head in champion_heads] or labelled
    missing = [head for head in heads if head not in labelled]
    if missing or not heads:
        raise DataValidationError(
            f"the held-out slice (newest {params.retrain.holdout_fraction:.0%} of the new history, "
            f"{len(holdout)} rows from {holdout['created_at'].min()}) carries no "
            f"{', '.join(missing or HEADS)} label: nothing to compare champion and challenger on"
        )
    heads = list(heads)
    names = {head: params.mlflow.model_name(head) for head in heads}
    # Before any training: without a champion there is nothing to gate against.
    champions = load_registered_models(
        heads, tracking_uri=params.mlflow.tracking_uri, model_names=names, alias=params.mlflow.champion_alias
    )

    reference_sources = drift_reference(params.data.sources, history.tickets, history_sources, described_by)
    stage(f"drift report (reference: {', '.join(reference_sources)})")
    report = drift_report(
        previous.tickets[previous.tickets["source"].isin(reference_sources)],
        history.tickets,
        heads=HEADS,
        thresholds=Thresholds(psi=params.retrain.drift.psi_threshold, js=params.retrain.drift.js_threshold),
        length_bins=params.retrain.drift.length_bins,
        vocabulary_size=params.retrain.drift.vocabulary_size,
        vocabulary_sample=params.retrain.drift.vocabulary_sample,
    )
    if output is not None:
        _write_reports(output, report, None)

    # Train on everything but the held-out slice, and on no copy of a held-out text.
    held_keys = set(text_keys(holdout, max_chars))
    training = pd.concat([merged.previous, merged.history[~held], merged.extra], ignore_index=True)
    leaked = text_keys(training, max_chars).isin(held_keys)
    training = training[~leaked].reset_index(drop=True)
    counts = {
        "history_rows": len(history.tickets),
        "holdout_rows": len(holdout),
        "previous_rows": len(previous.tickets),
        "corrections": len(corrections),
        "corrections_matched": merged.matched,
        "corrections_added": len(merged.extra),
        "corrections_ignored_values": ignored,
        **{f"relabelled_{head}": count for head, count in merged.relabelled.items()},
        "dropped_copies_of_holdout": int(leaked.sum()),
        "training_rows": len(training),
    }
    stage(f"training challengers ({', '.join(heads)}) on {len(training)} tickets")
    trained = train(
        params,
        heads,
        params_path=params_path,
        code_folder=code_folder,
        family=family,
        tickets=LoadResult(tickets=training, reports=previous.reports + history.reports),
        run_name="retrain",
    )

    stage(f"champion vs challenger on {len(holdout)} held-out tickets")
    client = registry_client(params.mlflow.tracking_uri)
    outcomes: dict[str, HeadOutcome] = {}
    for head, result in trained.heads.items():
        rows = holdout[holdout[head].notna()]
        labels = params.heads.get(head).labels
        majority = str(training[head].dropna().mode().iloc[0])
        name, version = result.registered_name, result.version
        pinned = HeadRef(head, f"models:/{name}/{version}", version, result.run_id, registry_name=name)
        challenger = load_models(ModelSource((pinned,), params.mlflow.tracking_uri))[head]
        reports = {
            side: holdout_report(model, rows, head, labels, majority, max_chars)
            for side, model in (("champion", champions[head]), ("challenger", challenger))
        }
        verdict = gate(
            head,
            reports["champion"],
            reports["challenger"],
            min_gain=params.promotion.min_macro_f1_gain,
            max_recall_drop=params.promotion.max_recall_drop,
        )
        champion_version = str(champions[head].version)
        if verdict.passed:
            promote(
                client,
                result.registered_name,
                result.version,
                params.mlflow.champion_alias,
                reason=f"retrain gate passed on {verdict.rows} held-out tickets: "
                + "; ".join(verdict.reasons),
                by=by,
                metrics=verdict.metrics(),
                log=AliasLog.of(params.mlflow),
                action="retrain",
            )
        client.set_model_version_tag(
            result.registered_name, result.version, "retrain_gate", _verdict(verdict)
        )
        outcomes[head] = HeadOutcome(
            head,
            champion_version,
            result.version,
            verdict,
            verdict.passed,
            reports["champion"],
            reports["challenger"],
        )

    result = RetrainResult(
        trained.parent_run_id, report, outcomes, counts, history_sources, reference_sources
    )
    tracking.use_tracking(
        params.mlflow.tracking_uri, params.mlflow.experiment, params.mlflow.artifact_location
    )
    with mlflow.start_run(run_id=trained.parent_run_id):
        mlflow.set_tag("retrain", "true")
        mlflow.log_params(
            {
                "history": ",".join(str(path) for path in histories),
                "holdout_fraction": params.retrain.holdout_fraction,
                "drift_reference": ",".join(reference_sources),
                "holdout_from": str(holdout["created_at"].min()),
                "min_macro_f1_gain": params.promotion.min_macro_f1_gain,
                "max_recall_drop": params.promotion.max_recall_drop,
            }
        )
        mlflow.log_metrics({f"count_{key}": value for key, value in counts.items()})
        mlflow.log_input(
            mlflow.data.from_pandas(
                holdout[["id", "source", "subject", "body", "created_at", *heads]]
                .astype(str)
                .reset_index(drop=True),
                name="retrain-holdout",
            ),
            context="holdout",
        )
        for head, outcome in outcomes.items():
            mlflow.log_metrics({f"{head}.{key}": value for key, value in outcome.gate.metrics().items()})
            mlflow.set_tag(f"promoted.{head}", str(outcome.promoted).lower())
        mlflow.log_metrics({f"drift.{f.feature.replace(':', '.')}.psi": f.psi for f in report.features})
        mlflow.log_metrics({f"drift.{f.feature.replace(':', '.')}.js": f.js for f in report.features})
        with tempfile.TemporaryDirectory() as folder:
            _write_reports(Path(folder), report, result)
            mlflow.log_artifacts(folder, "retrain")
    if output is not None:
        _write_reports(output, report, result)
    return result


def retrain_with_corrections(
    params: Params,
    histories: Sequence[Path],
    *,
    params_path: Path,
    heads: Sequence[str] | None = None,
    family: str | None = None,
    source: str | None = None,
    database_url: str | None = None,
    by: str | None = None,
    output: Path | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> RetrainResult:
    """What `urgency retrain` runs: read the agents' corrections from the service's store (when
    `retrain.use_corrections`), then `retrain`. `database_url` None: the default store next to
    the params file, which need not exist yet (no service has run: no corrections). `by`
    defaults to the login name."""
    import getpass

    from urgency.store import database_url as store_url
    from urgency.store import redact, sqlite_path

    def stage(text: str) -> None:
        if on_stage:
            on_stage(text)
        else:
            log.info(text)

    decisions = None
    if params.retrain.use_corrections:
        url = store_url(database_url, params_path)
        path = sqlite_path(url)
        # Only the default may be missing; a store named explicitly must be there.
        if database_url is None and path is not None and not path.exists():
            stage(f"no service store at {path}: no agents' corrections to merge")
        else:
            decisions = read_decisions(url)
            stage(f"agents' corrections: {len(decisions)} decided ticket(s) in {redact(url)}")
    return retrain(
        params,
        histories,
        heads=heads,
        family=family,
        source=source,
        decisions=decisions,
        by=by or f"{getpass.getuser()} (urgency retrain)",
        params_path=params_path,
        output=output,
        on_stage=on_stage,
    )


def _verdict(verdict: Gate) -> str:
    return ("passed: " if verdict.passed else "refused: ") + "; ".join(verdict.reasons)


def _write_reports(folder: Path, report: DriftReport, result: RetrainResult | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "drift.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    (folder / "drift.md").write_text(report.to_markdown())
    if result is not None:
        (folder / "retrain.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
        (folder / "retrain.md").write_text(retrain_markdown(result))


def retrain_markdown(result: RetrainResult) -> str:
    lines = ["# Retrain: champion vs challenger on the held-out slice", ""]
    lines += [
        "| head | champion | challenger | held-out rows | macro-F1 | verdict |",
        "|---|---|---|---:|---|---|",
    ]
    for head, o in result.heads.items():
        g = o.gate
        lines.append(
            f"| {head} | v{o.champion_version} | v{o.challenger_version} | {g.rows} | "
            f"{g.champion_macro_f1:.3f} -> {g.challenger_macro_f1:.3f} | "
            f"{'promoted' if o.promoted else 'refused'}: {'; '.join(g.reasons)} |"
        )
    lines += ["", "| count | value |", "|---|---:|"]
    lines += [f"| {key} | {value:,} |" for key, value in result.counts.items()]
    return "\n".join(lines) + "\n" + "\n" + result.drift.to_markdown()

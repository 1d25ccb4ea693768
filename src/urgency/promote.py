"""Model choice: move the champion alias, by hand or through the one promotion policy.

Every registered version carries its validation and test macro-F1 as tags (set by
`urgency.train`). A promotion points the champion alias at a version and records who, when, why
and the figures behind it as tags on that version and, given an `AliasLog`, as one MLflow run per
move in the `<experiment>-aliases` experiment (so the history of a champion can be read in the
MLflow UI). Automatic promotion applies the one promotion policy (`gate`, params `promotion:`):
a challenger replaces the champion only when its macro-F1 is higher by at least
`min_macro_f1_gain` and no class's recall drops by more than `max_recall_drop`. `train
--promote-if-better` and `tune` judge on the validation split (the test split stays out of every
decision; only versions evaluated on the same validation rows, same dataset digest, are
compared), `retrain` on the newest slice of the new history. Where a head has a hand-labelled
check (`HandCheck`: the support-sentiment set for sentiment), `train` and `distill` also judge
on it: the figure measured where the model is used can refuse a validation winner, or let a
challenger through that is slightly lower on validation and clearly better there. A rollback is
a promotion back to the version the champion replaced.

Over 400 lines on purpose: alias moves, their audit trail and the promotion policy that moves
them are one job; the side-by-side comparison of families lives in `urgency.comparison`.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from urgency.config import MlflowParams, Params
from urgency.errors import ModelNotFoundError, RollbackError
from urgency.models import registry_client
from urgency.tracking import alias_version, dataset_digest


@dataclass(frozen=True)
class PromotionDecision:
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


@dataclass(frozen=True)
class AliasLog:
    """Where alias moves are recorded: an MLflow experiment with one run per move."""

    experiment: str
    artifact_location: str | None = None

    @classmethod
    def of(cls, params: MlflowParams) -> AliasLog:
        remote = params.tracking_uri.startswith(("http://", "https://"))
        return cls(f"{params.experiment}-aliases", None if remote else params.artifact_location)


# Figures of both versions copied into an alias move's record (from the versions' tags).
VERSION_FIGURES = ("validation_macro_f1", "test_macro_f1")


def promote(
    client: MlflowClient,
    name: str,
    version: str,
    alias: str,
    *,
    reason: str,
    by: str | None = None,
    metrics: Mapping[str, float] | None = None,
    log: AliasLog | None = None,
    action: str = "promote",
) -> str | None:
    """Point `alias` at `version` and tag the version with who, when, why and `metrics` (e.g. the
    gate's figures); with `log`, also record the move as an MLflow run. Returns the version the
    alias pointed at before (None if it was not set)."""
    _version(client, name, version)
    previous = alias_version(client, name, alias)
    client.set_registered_model_alias(name, alias, version)
    tags = {
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "promoted_by": by or getpass.getuser(),
        "promotion_reason": reason,
        "promotion_action": action,
        "replaced_version": str(previous.version) if previous is not None else "",
        **{f"promotion_{key}": f"{value:.4f}" for key, value in (metrics or {}).items()},
    }
    if log is not None:
        tags["promotion_run_id"] = record_alias_move(
            client,
            log,
            name=name,
            alias=alias,
            from_version=str(previous.version) if previous is not None else None,
            to_version=str(version),
            by=tags["promoted_by"],
            reason=reason,
            action=action,
            at=tags["promoted_at"],
            metrics=metrics or {},
        )
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return str(previous.version) if previous is not None else None


def record_alias_move(
    client: MlflowClient,
    log: AliasLog,
    *,
    name: str,
    alias: str,
    from_version: str | None,
    to_version: str,
    by: str,
    reason: str,
    action: str,
    at: str,
    metrics: Mapping[str, float],
) -> str:
    """One finished MLflow run named `alias-move` in `log.experiment`: params model, head, alias,
    from, to, by, reason, action, at; metrics: `metrics` plus both versions' macro-F1 tags
    (`from_validation_macro_f1`, `to_test_macro_f1`, ...). Returns the run id."""
    experiment_id = _experiment_id(client, log)
    target = _version(client, name, to_version)
    figures = dict(metrics)
    sides = {"from": _version(client, name, from_version) if from_version else None, "to": target}
    for side, version in sides.items():
        for figure in VERSION_FIGURES:
            if version is not None and figure in version.tags:
                figures[f"{side}_{figure}"] = float(version.tags[figure])
    run = client.create_run(
        experiment_id,
        run_name="alias-move",
        tags={"action": action, "model": name, "alias": alias, "mlflow.user": by},
    )
    params = {
        "model": name,
        "head": target.tags.get("head", ""),
        "alias": alias,
        "from": from_version or "none",
        "to": to_version,
        "by": by,
        "reason": reason[:5000],  # MLflow's limit for a param value is 6000 characters
        "action": action,
        "at": at,
    }
    stamp = int(datetime.now(UTC).timestamp() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(key, float(value), stamp, 0) for key, value in figures.items()],
        params=[Param(key, str(value)) for key, value in params.items()],
    )
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _experiment_id(client: MlflowClient, log: AliasLog) -> str:
    found = client.get_experiment_by_name(log.experiment)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(log.experiment, artifact_location=log.artifact_location)
    except MlflowException:  # created by another process in the meantime
        found = client.get_experiment_by_name(log.experiment)
        if found is None:
            raise
        return found.experiment_id


def alias_moves(client: MlflowClient, log: AliasLog, name: str | None = None) -> pd.DataFrame:
    """The recorded alias moves, newest first: one row per move with its params and metrics."""
    found = client.get_experiment_by_name(log.experiment)
    if found is None:
        return pd.DataFrame()
    query = f"params.model = '{name}'" if name else ""
    runs = client.search_runs([found.experiment_id], query, order_by=["attributes.start_time DESC"])
    return pd.DataFrame([{"run_id": run.info.run_id, **run.data.params, **run.data.metrics} for run in runs])


def rollback(
    client: MlflowClient,
    name: str,
    alias: str,
    *,
    reason: str,
    to: str | None = None,
    by: str | None = None,
    log: AliasLog | None = None,
) -> tuple[str, str]:
    """Move `alias` back to `to`, by default to the version the current one replaced (its
    `replaced_version` tag). Returns (version before, version after)."""
    current = alias_version(client, name, alias)
    if current is None:
        raise ModelNotFoundError(f"{name}@{alias} is not set: there is nothing to roll back")
    target = to or current.tags.get("replaced_version", "")
    if not target:
        raise RollbackError(
            f"{name} v{current.version} did not replace an earlier version (no replaced_version tag): "
            "nothing to roll back; pass --to VERSION"
        )
    if str(target) == str(current.version):
        raise RollbackError(f"{name} v{target} is already the {alias}: nothing to roll back")
    promote(client, name, str(target), alias, reason=reason, by=by, log=log, action="rollback")
    return str(current.version), str(target)


# ---------------------------------------------------------------------------------------------
# The promotion policy: one comparison for `train --promote-if-better`, `retrain` and `tune`


# Float noise must not decide a promotion.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Gate:
    """The verdict on one head: promote only when both rules hold."""

    head: str
    passed: bool
    rows: int
    champion_macro_f1: float
    challenger_macro_f1: float
    min_gain: float
    max_recall_drop: float
    # label -> (champion recall, challenger recall) for the labels in the held-out slice
    recall: dict[str, tuple[float, float]]
    reasons: list[str]

    @property
    def gain(self) -> float:
        return self.challenger_macro_f1 - self.champion_macro_f1

    def metrics(self) -> dict[str, float]:
        """The figures behind the verdict, as MLflow metric names."""
        figures = {
            "holdout_rows": float(self.rows),
            "champion_macro_f1": self.champion_macro_f1,
            "challenger_macro_f1": self.challenger_macro_f1,
            "macro_f1_gain": self.gain,
            "min_macro_f1_gain": self.min_gain,
            "max_recall_drop": self.max_recall_drop,
        }
        for label, (champion, challenger) in self.recall.items():
            safe = "".join(ch if ch.isalnum() else "_" for ch in label)
            figures[f"champion_recall_{safe}"] = champion
            figures[f"challenger_recall_{safe}"] = challenger
        return figures


@dataclass(frozen=True)
class HandCheck:
    """A head measured where it is used (a hand-labelled set, `urgency.hand_labelled`) joins the
    promotion policy (params `promotion:`). The validation split measures the training sources'
    own text; a model can win there and fail on the helpdesk's (the tweet-trained sentiment
    model). So: a challenger that passes on validation is still refused when it loses more than
    `max_drop` on the check; one that gains at least `min_gain` on the check passes without the
    validation gain, provided its validation macro-F1 falls by no more than `max_macro_f1_drop`
    and no class's recall falls by more than the policy allows."""

    name: str
    figure: Callable[[ModelVersion], float]  # the version's figure on the set (higher is better)
    min_gain: float
    max_drop: float
    max_macro_f1_drop: float

    def judge(self, judged: Gate, champion: float, challenger: float) -> tuple[bool, str]:
        gain = challenger - champion
        said = f"{self.name} {champion:.4f} -> {challenger:.4f} ({gain:+.4f})"
        recall_ok = all(
            before - after <= judged.max_recall_drop + TOLERANCE for before, after in judged.recall.values()
        )
        if judged.passed:
            if gain < -self.max_drop - TOLERANCE:
                return False, f"{said} drops more than the allowed {self.max_drop:.4f}"
            return True, f"{said} within the allowed drop {self.max_drop:.4f}"
        if gain < self.min_gain - TOLERANCE:
            return False, f"{said} below the gain {self.min_gain:+.4f} that would outweigh validation"
        if -judged.gain > self.max_macro_f1_drop + TOLERANCE or not recall_ok:
            return False, (
                f"{said} gains, but validation macro-F1 falls by more than {self.max_macro_f1_drop:.4f} "
                "or a class's recall by more than allowed"
            )
        return True, (
            f"{said} gains at least {self.min_gain:+.4f} while validation macro-F1 falls by no more "
            f"than {self.max_macro_f1_drop:.4f}"
        )


def gate(
    head: str,
    champion: dict[str, Any],
    challenger: dict[str, Any],
    *,
    min_gain: float,
    max_recall_drop: float,
) -> Gate:
    """Compare two `classification_report`s of the same rows: the challenger passes when its
    macro-F1 is at least `min_gain` higher and no class's recall falls by more than
    `max_recall_drop`. Classes without held-out rows have no recall and are not judged."""
    champion_f1, challenger_f1 = champion["macro_f1"], challenger["macro_f1"]
    gain = challenger_f1 - champion_f1
    reasons = []
    f1_ok = gain >= min_gain - TOLERANCE
    reasons.append(
        f"macro-F1 {champion_f1:.4f} -> {challenger_f1:.4f} ({gain:+.4f}; "
        f"{'meets' if f1_ok else 'below'} the required {min_gain:+.4f})"
    )
    recall = {}
    recall_ok = True
    for label, scores in champion["per_class"].items():
        if scores["support"] == 0:
            continue
        if label not in challenger["per_class"]:
            continue  # a label the challenger does not know: macro-F1 already counts it
        before, after = scores["recall"], challenger["per_class"][label]["recall"]
        recall[label] = (before, after)
        if before - after > max_recall_drop + TOLERANCE:
            recall_ok = False
            reasons.append(
                f"recall of {label} {before:.4f} -> {after:.4f} ({after - before:+.4f}; "
                f"drops more than the allowed {max_recall_drop:.4f})"
            )
    if recall_ok:
        reasons.append(f"no class's recall drops more than {max_recall_drop:.4f}")
    return Gate(
        head=head,
        passed=f1_ok and recall_ok,
        rows=int(champion["n"]),
        champion_macro_f1=champion_f1,
        challenger_macro_f1=challenger_f1,
        min_gain=min_gain,
        max_recall_drop=max_recall_drop,
        recall=recall,
        reasons=reasons,
    )


def _validation_report(client: MlflowClient, version: ModelVersion) -> dict[str, Any] | None:
    """A version's validation figures as `gate` reads them: macro-F1 from the registry tag,
    per-class recall from its training run (None without the macro-F1)."""
    macro_f1 = _validation_f1(version)
    if macro_f1 is None:
        return None
    metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
    prefix = "validation_recall_"
    per_class = {
        name.removeprefix(prefix): {"recall": value, "support": 1}
        for name, value in metrics.items()
        if name.startswith(prefix)
    }
    return {"macro_f1": macro_f1, "n": 0, "per_class": per_class}


def judge_version(
    client: MlflowClient,
    head: str,
    name: str,
    version: str,
    alias: str,
    *,
    min_gain: float,
    max_recall_drop: float,
    check: HandCheck | None = None,
) -> tuple[PromotionDecision, Gate | None]:
    """Would `version` replace the `alias` version under the promotion policy? (Nothing moves.)
    The comparison is on the validation split both versions were evaluated on, and on the
    head's hand-labelled `check` when there is one (`HandCheck.judge`)."""
    candidate = _version(client, name, version)
    champion = alias_version(client, name, alias)

    def verdict(
        promoted: bool, reason: str, judged: Gate | None = None
    ) -> tuple[PromotionDecision, Gate | None]:
        decision = PromotionDecision(
            head=head,
            name=name,
            candidate=str(version),
            champion=str(champion.version) if champion is not None else None,
            candidate_f1=_validation_f1(candidate),
            champion_f1=_validation_f1(champion) if champion is not None else None,
            promoted=promoted,
            reason=reason,
        )
        return decision, judged

    if champion is None:
        return verdict(True, "no champion yet")
    if str(champion.version) == str(version):
        return verdict(False, "already the champion")
    champion_report, candidate_report = (
        _validation_report(client, champion),
        _validation_report(client, candidate),
    )
    if champion_report is None or candidate_report is None:
        return verdict(False, "a validation_macro_f1 tag is missing: promote by hand")
    if dataset_digest(client, candidate.run_id, "validation") != dataset_digest(
        client, champion.run_id, "validation"
    ):
        return verdict(False, "evaluated on different validation rows than the champion: promote by hand")
    judged = gate(head, champion_report, candidate_report, min_gain=min_gain, max_recall_drop=max_recall_drop)
    if judged.passed:
        reason = (
            f"validation macro-F1 {judged.challenger_macro_f1:.4f} beats v{champion.version} "
            f"({judged.champion_macro_f1:.4f}) by {judged.gain:+.4f} >= {min_gain}"
        )
    else:
        reason = f"validation: {'; '.join(judged.reasons)}"
    if check is None:
        return verdict(judged.passed, reason, judged)
    passed, check_reason = check.judge(judged, check.figure(champion), check.figure(candidate))
    return verdict(passed, f"{reason}; {check_reason}", judged)


def promote_if_better(
    client: MlflowClient,
    head: str,
    name: str,
    version: str,
    alias: str,
    *,
    min_gain: float,
    max_recall_drop: float,
    by: str,
    log: AliasLog | None = None,
    check: HandCheck | None = None,
) -> PromotionDecision:
    """Promote `version` when it passes the promotion policy (`judge_version`)."""
    decision, judged = judge_version(
        client, head, name, version, alias, min_gain=min_gain, max_recall_drop=max_recall_drop, check=check
    )
    if decision.promoted:
        metrics = judged.metrics() if judged is not None else {}
        if decision.candidate_f1 is not None:
            metrics["candidate_validation_macro_f1"] = decision.candidate_f1
        promote(client, name, version, alias, reason=decision.reason, by=by, metrics=metrics, log=log)
    return decision


def promote_each_if_better(
    params: Params,
    versions: Mapping[str, str],
    *,
    by: str,
    on_decision: Callable[[PromotionDecision], None] | None = None,
    checks: Mapping[str, HandCheck] | None = None,
) -> list[PromotionDecision]:
    """`promote_if_better` for each head's new version ({head: version}) under the promotion
    policy (params `promotion:`), with the head's hand-labelled check from `checks` when there
    is one; `on_decision` hears each decision as it is made, so a failure on a later head does
    not hide an earlier promotion."""
    client = registry_client(params.mlflow.tracking_uri)
    log = AliasLog.of(params.mlflow)
    decisions = []
    for head, version in versions.items():
        decision = promote_if_better(
            client,
            head,
            params.mlflow.model_name(head),
            version,
            params.mlflow.champion_alias,
            min_gain=params.promotion.min_macro_f1_gain,
            max_recall_drop=params.promotion.max_recall_drop,
            by=by,
            log=log,
            check=(checks or {}).get(head),
        )
        if on_decision:
            on_decision(decision)
        decisions.append(decision)
    return decisions

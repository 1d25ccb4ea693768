"""SLA breach risk: the chance an open ticket misses its deadline.

Two estimates, one meaning (a probability, 0..1):
- `rules_risk`, needing no history to fit: the ticket waits for the queue ahead of it and then
  its own handling, each taking the team's median handling time; the wait is taken as
  log-normal around that (spread `RULES_SPREAD`), and the risk is the chance it runs past the
  time left;
- a model fitted on closed history (features `BREACH_FEATURES`, label: the SLA was missed),
  evaluated against `rules_risk` on the ServiceNow incident log.

The model's path: a history (`incident_history` from the ServiceNow log, `closed_history` from a
helpdesk's closed tickets: one row per ticket, what was known at its opening, `made_sla`) ->
`evaluate_breach` (`fit_breach_model` on the earlier 80% by opening, the model and the rules
estimate judged on the latest 20%: AUC, Brier, calibration tables) -> `log_breach_model` (an
MLflow run, the model registered as `<model_prefix>-breach-risk`, champion only when it beats
the rules) -> `load_breach_model` (the champion, digest-checked, or None). docs/operations.md,
"Breach risk model", has the measured figures.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from urgency.errors import DataValidationError, ModelNotFoundError

if TYPE_CHECKING:
    from urgency.config import MlflowParams

# How spread out waits are around their median: the log-normal's sigma. 1.0: a quarter of
# waits take under half the median, a quarter over twice it (roughly, as handling times do).
RULES_SPREAD = 1.0
# What the model reads of a ticket when it is opened (plan: where the helpdesk has plans).
BREACH_FEATURES = ("priority", "team", "queue_length", "hour_of_day", "weekday", "category", "plan")


def expected_wait_hours(queue_ahead: int, median_handling_hours: float, agents: int = 1) -> float:
    """The median time until the ticket is done: the tickets ahead of it, shared among the
    team's agents, then its own handling."""
    return median_handling_hours * (max(queue_ahead, 0) / max(agents, 1) + 1.0)


def rules_risk(
    hours_left: float,
    queue_ahead: int,
    median_handling_hours: float,
    agents: int = 1,
    spread: float = RULES_SPREAD,
) -> float:
    """P(wait > hours_left) for a log-normal wait whose median is `expected_wait_hours`; 1.0
    once the deadline has passed."""
    if hours_left <= 0:
        return 1.0
    expected = expected_wait_hours(queue_ahead, median_handling_hours, agents)
    if expected <= 0:
        return 0.0
    z = math.log(hours_left / expected) / spread
    return 0.5 * math.erfc(z / math.sqrt(2))


# ---------------------------------------------------------------------------------------------
# Breach risk model (issue 18, item 3): history -> features, fit, evaluate against the rules,
# MLflow logging and registration, loading the champion.

# The model's name in the registry: `<mlflow.model_prefix>-breach-risk`.
BREACH_MODEL = "breach-risk"
CATEGORICAL_FEATURES = ("priority", "team", "category", "plan")
NUMERIC_FEATURES = ("queue_length", "hour_of_day", "weekday")
HISTORY_COLUMNS = (*BREACH_FEATURES, "opened_at", "resolved_at", "made_sla")
# Where a value is not known (a `?` in the ServiceNow log, an empty cell, a log without plans).
UNKNOWN = "unknown"
# ServiceNow's dates are day first, to the minute (29/2/2016 01:16).
INCIDENT_TIME_FORMAT = "%d/%m/%Y %H:%M"
INCIDENT_COLUMNS = (
    "number",
    "opened_at",
    "resolved_at",
    "priority",
    "assignment_group",
    "category",
    "made_sla",
)
# What the model requires of its own packages when loaded (pinned at logging time).
BREACH_REQUIREMENTS = ("scikit-learn", "scipy", "numpy", "pandas")
CALIBRATION_BINS = 10
TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})
FAMILIES = ("logistic", "boosting")


def queue_lengths(teams: Sequence[str], opened: np.ndarray, ended: np.ndarray) -> np.ndarray:
    """For each ticket i: how many other tickets of its team were open when it was opened
    (opened_j <= opened_i < ended_j, j != i). Times are numbers (e.g. int64 nanoseconds); an
    interval that ends before it starts counts as closed at its start. One sort and two binary
    searches per team: O(n log n), not the O(n^2) of comparing every pair."""
    opened = np.asarray(opened, dtype=np.float64)
    ended = np.maximum(np.asarray(ended, dtype=np.float64), opened)
    codes, _ = pd.factorize(pd.Series(list(teams), dtype=object), use_na_sentinel=False)
    counts = np.zeros(len(opened), dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    boundaries = np.flatnonzero(np.diff(codes[order])) + 1
    for members in np.split(order, boundaries):
        if members.size == 0:
            continue
        starts = np.sort(opened[members])
        ends = np.sort(ended[members])
        at = opened[members]
        started = np.searchsorted(starts, at, side="right")  # opened_j <= t
        finished = np.searchsorted(ends, at, side="right")  # ended_j <= t (so not open at t)
        # The ticket itself is among those open at its own opening unless it has no duration.
        itself = (ended[members] > at).astype(np.int64)
        counts[members] = started - finished - itself
    return counts


def _text(values: pd.Series) -> pd.Series:
    cleaned = values.astype("string").str.strip()
    return cleaned.mask(cleaned.isna() | cleaned.isin(["", "?", "nan", "None"]), UNKNOWN).astype(str)


def _parse_times(values: pd.Series, column: str, *, day_first_format: str | None, what: str) -> pd.Series:
    """Text times -> UTC timestamps; a blank or `?` is missing, anything else unreadable is a
    DataValidationError naming the column, the row and the value."""
    text = values.astype("string").str.strip()
    blank = text.isna() | text.isin(["", "?"])
    if day_first_format is not None:
        parsed = pd.to_datetime(text.mask(blank), format=day_first_format, errors="coerce")
    else:
        parsed = pd.to_datetime(text.mask(blank), errors="coerce", format="ISO8601")
    bad = parsed.isna() & ~blank
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataValidationError(
            f"{what}: column {column}, row {row + 1}: {values.iloc[row]!r} is not a time"
            + (" (expected day first, e.g. 29/2/2016 01:16)" if day_first_format else " (ISO 8601)")
            + f"; {int(bad.sum())} such value(s)"
        )
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize("UTC")
    return parsed.dt.tz_convert("UTC")


def _with_time_features(frame: pd.DataFrame, ended: pd.Series) -> pd.DataFrame:
    opened = frame["opened_at"]
    # Never ended (no time at all): open for good, so it counts in every later queue.
    until = np.nan_to_num(_seconds(ended), nan=np.inf)
    frame["queue_length"] = queue_lengths(frame["team"].tolist(), _seconds(opened), until)
    frame["hour_of_day"] = opened.dt.hour.astype(int)
    frame["weekday"] = opened.dt.day_of_week.astype(int)
    return frame


def _seconds(moments: pd.Series) -> np.ndarray:
    """UTC timestamps -> seconds since 1970 (NaN where missing), whatever their resolution
    (pandas may hold one column in microseconds and another in nanoseconds)."""
    since = pd.to_datetime(moments, utc=True) - pd.Timestamp(0, tz="UTC")
    return (since / pd.Timedelta(seconds=1)).to_numpy(dtype=np.float64, na_value=np.nan)


def incident_history(events: pd.DataFrame, *, what: str = "incident log") -> pd.DataFrame:
    """The ServiceNow event log (`incidents.read_incident_log`: one row per update, the last one
    the incident's final state) -> one row per incident: `BREACH_FEATURES`, `opened_at`,
    `resolved_at`, `made_sla`, and `agent` (who it was last assigned to: the rules estimate
    counts a group's agents), sorted by `opened_at`.

    What the model may read is what was known when the incident was opened: priority, team
    (assignment_group) and category are taken from the incident's FIRST logged state (40% of
    incidents end in another group than they started in - often because they were late - and
    the final group would leak the outcome). `made_sla` is the final state's. The queue is the
    number of incidents of the same group open (opened, not yet resolved; without a resolution
    time: until closed) at the incident's opening. The log has no plans: `plan` is "unknown"."""
    missing = [column for column in INCIDENT_COLUMNS if column not in events.columns]
    if missing:
        raise DataValidationError(f"{what}: no column(s) {missing} (has {list(events.columns)})")
    if events.empty:
        raise DataValidationError(f"{what}: no events")
    grouped = events.groupby("number", sort=False)
    first = grouped.head(1).set_index("number")
    last = grouped.tail(1).set_index("number").loc[first.index]
    opened = _parse_times(first["opened_at"], "opened_at", day_first_format=INCIDENT_TIME_FORMAT, what=what)
    resolved = _parse_times(
        last["resolved_at"], "resolved_at", day_first_format=INCIDENT_TIME_FORMAT, what=what
    )
    if "closed_at" in last.columns:
        closed = _parse_times(
            last["closed_at"], "closed_at", day_first_format=INCIDENT_TIME_FORMAT, what=what
        )
        ended = resolved.fillna(closed)
    else:
        ended = resolved
    if opened.isna().any():
        row = int(np.flatnonzero(opened.isna().to_numpy())[0])
        raise DataValidationError(f"{what}: incident {first.index[row]!r} has no opened_at")
    made = last["made_sla"].astype(str).str.strip().str.lower()
    unknown_label = ~made.isin(TRUE_WORDS | FALSE_WORDS)
    if unknown_label.any():
        row = int(np.flatnonzero(unknown_label.to_numpy())[0])
        raise DataValidationError(
            f"{what}: column made_sla of incident {last.index[row]!r}: {last['made_sla'].iloc[row]!r} "
            "is not true/false"
        )
    from urgency.incidents import PRIORITY_CODES

    # "3" or the export's long form "3 - Moderate" -> P3.
    digits = first["priority"].astype(str).str.strip().str.split(" ", n=1).str[0]
    priority = digits.map(PRIORITY_CODES).fillna(UNKNOWN)
    frame = pd.DataFrame(
        {
            "priority": priority.to_numpy(),
            "team": _text(first["assignment_group"]).to_numpy(),
            "category": _text(first["category"]).to_numpy(),
            "plan": UNKNOWN,
            "opened_at": opened.to_numpy(),
            "resolved_at": resolved.to_numpy(),
            "made_sla": made.isin(TRUE_WORDS).to_numpy(),
            "agent": _text(last["assigned_to"]).to_numpy() if "assigned_to" in last.columns else UNKNOWN,
        },
        index=pd.Index(first.index, name="incident"),
    )
    frame["opened_at"] = pd.to_datetime(frame["opened_at"], utc=True)
    frame["resolved_at"] = pd.to_datetime(frame["resolved_at"], utc=True)
    frame = _with_time_features(frame, pd.Series(ended.to_numpy(), index=frame.index))
    return _ordered(frame)


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    columns = [*HISTORY_COLUMNS, *[c for c in ("agent", "hours_left") if c in frame.columns]]
    return frame[columns].sort_values("opened_at", kind="stable")


def closed_history(frame: pd.DataFrame, *, what: str = "closed tickets") -> pd.DataFrame:
    """A closed-tickets frame (docs/reports.md: `agreement.read_closed_tickets` or
    `agreement.closed_tickets_from_store`, times as UTC timestamps) -> the history
    `incident_history` gives, so a helpdesk fits the model on its own tickets.

    priority, team: the rules' decision (known when the ticket arrived; the agents' final
    values are not); category: the model's; plan: the ticket's `plan` field ("unknown" without
    one). `made_sla`: every deadline the ticket had was met (first response by
    `first_response_due`, resolution by `resolution_due`); a ticket with no deadline that can
    be judged (no due time, or no time it was answered / resolved) has no label and is left
    out. The queue counts the team's tickets created and not yet resolved at its creation (a
    ticket without `resolved_at` is counted as open until its first response, else not at
    all). `hours_left` (the resolution deadline's hours from creation) lets the rules estimate
    use the ticket's own deadline; `agent` (the `assignee`, when the export has it) counts a
    team's agents."""
    required = ("created_at", "priority", "team")
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise DataValidationError(f"{what}: no column(s) {missing} (has {list(frame.columns)})")

    def times(column: str) -> pd.Series:
        if column not in frame.columns:
            return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
        values = frame[column]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            return values.dt.tz_convert("UTC")
        parsed = _parse_times(
            values.astype("string").mask(values.astype("string").str.startswith("9999")),
            column,
            day_first_format=None,
            what=what,
        )
        return parsed

    created = times("created_at")
    if created.isna().any():
        row = int(np.flatnonzero(created.isna().to_numpy())[0])
        raise DataValidationError(f"{what}: row {row + 1}, column created_at: no time")
    first_due, first_at = times("first_response_due"), times("first_response_at")
    resolution_due, resolved = times("resolution_due"), times("resolved_at")
    judged_first = first_due.notna() & first_at.notna()
    judged_resolution = resolution_due.notna() & resolved.notna()
    made = ~((judged_first & (first_at > first_due)) | (judged_resolution & (resolved > resolution_due)))
    history = pd.DataFrame(
        {
            "priority": _text(frame["priority"]),
            "team": _text(frame["team"]),
            "category": _text(frame["category"]) if "category" in frame.columns else UNKNOWN,
            "plan": _text(frame["plan"]) if "plan" in frame.columns else UNKNOWN,
            "opened_at": created,
            "resolved_at": resolved,
            "made_sla": made,
            "agent": _text(frame["assignee"]) if "assignee" in frame.columns else UNKNOWN,
            "hours_left": (resolution_due - created).dt.total_seconds() / 3600.0,
        },
        index=frame.index,
    )
    ended = resolved.fillna(first_at).fillna(created)
    history = _with_time_features(history, ended)
    labelled = judged_first | judged_resolution
    if not labelled.any():
        raise DataValidationError(
            f"{what}: no ticket has a deadline and the time it was met or missed (columns "
            "first_response_due + first_response_at, or resolution_due + resolved_at): nothing to learn from"
        )
    return _ordered(history[labelled.to_numpy()])


def features_at_opening(tickets: pd.DataFrame, *, opened: str = "created_at") -> pd.DataFrame:
    """What `BreachModel.predict_risk` reads of tickets (open ones, say: the backlog) that have
    `opened` (a time), priority, team, queue_length and optionally category and plan: the hour
    and weekday of the opening added, a missing category or plan "unknown". The risk is the
    model's as of the opening: it does not know how much of the deadline has passed."""
    missing = [c for c in (opened, "priority", "team", "queue_length") if c not in tickets.columns]
    if missing:
        raise DataValidationError(f"tickets: no column(s) {missing} for the breach risk model")
    moments = pd.to_datetime(tickets[opened], utc=True, errors="coerce", format="ISO8601")
    if moments.isna().any():
        row = int(np.flatnonzero(moments.isna().to_numpy())[0])
        raise DataValidationError(
            f"tickets: row {row + 1}, column {opened}: {tickets[opened].iloc[row]!r} is not a time"
        )
    features = pd.DataFrame(
        {
            "priority": tickets["priority"],
            "team": tickets["team"],
            "queue_length": tickets["queue_length"],
            "hour_of_day": moments.dt.hour,
            "weekday": moments.dt.day_of_week,
            "category": tickets["category"] if "category" in tickets.columns else UNKNOWN,
            "plan": tickets["plan"] if "plan" in tickets.columns else UNKNOWN,
        },
        index=tickets.index,
    )
    return features[list(BREACH_FEATURES)]


def check_history(history: pd.DataFrame, what: str = "history") -> None:
    missing = [column for column in HISTORY_COLUMNS if column not in history.columns]
    if missing:
        raise DataValidationError(f"{what}: no column(s) {missing} (has {list(history.columns)})")


def time_split(history: pd.DataFrame, test_share: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The earlier (1 - test_share) of the rows by `opened_at` and the later rest: a model is
    judged on tickets opened after everything it learned from, as it will be used."""
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must be between 0 and 1, not {test_share}")
    ordered = history.sort_values("opened_at", kind="stable")
    cut = round(len(ordered) * (1 - test_share))
    return ordered.iloc[:cut], ordered.iloc[cut:]


def _features(frame: pd.DataFrame, what: str = "tickets") -> pd.DataFrame:
    missing = [column for column in BREACH_FEATURES if column not in frame.columns]
    if missing:
        raise DataValidationError(f"{what}: no column(s) {missing} for the breach risk model")
    features = pd.DataFrame(index=frame.index)
    for column in CATEGORICAL_FEATURES:
        features[column] = _text(frame[column])
    for column in NUMERIC_FEATURES:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataValidationError(
                f"{what}: row {row + 1}, column {column}: {frame[column].iloc[row]!r} is not a number"
            )
        features[column] = values.astype(np.float64)
    return features[list(BREACH_FEATURES)]


def missed(history: pd.DataFrame) -> np.ndarray:
    """The label: 1 when the SLA was missed."""
    return (~history["made_sla"].astype(bool)).to_numpy().astype(np.int64)


def build_pipeline(family: str, seed: int = 0) -> Any:
    """The model before fitting. `logistic`: one-hot priority, team, category, plan, hour and
    weekday, log(1 + queue) scaled; `boosting`: histogram gradient boosting on the categories
    as native categories and the numbers as they are (it finds the hour's and the queue's
    shapes itself)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

    categorical = list(CATEGORICAL_FEATURES)
    if family == "logistic":
        columns = ColumnTransformer(
            [
                (
                    "categories",
                    # Rare teams and categories pooled: one weight each would be noise.
                    OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20),
                    [*categorical, "hour_of_day", "weekday"],
                ),
                (
                    "queue",
                    make_pipeline(FunctionTransformer(np.log1p), StandardScaler()),
                    ["queue_length"],
                ),
            ]
        )
        # C and the boosting's settings below: the best validation AUC of a few tried on the log.
        classifier = LogisticRegression(C=0.1, max_iter=2000)
    elif family == "boosting":
        columns = ColumnTransformer(
            [
                (
                    "categories",
                    OrdinalEncoder(
                        handle_unknown="use_encoded_value",
                        unknown_value=np.nan,
                        min_frequency=20,
                        # HistGradientBoosting's native categories: fewer than its 255 bins.
                        max_categories=250,
                    ),
                    categorical,
                ),
                ("numbers", "passthrough", list(NUMERIC_FEATURES)),
            ]
        )
        classifier = HistGradientBoostingClassifier(
            categorical_features=[True] * len(categorical) + [False] * len(NUMERIC_FEATURES),
            learning_rate=0.03,
            max_iter=200,
            max_leaf_nodes=15,
            min_samples_leaf=60,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=seed,
        )
    else:
        raise ValueError(f"unknown breach model family {family!r} (one of {FAMILIES})")
    return Pipeline([("columns", columns), ("classifier", classifier)])


@dataclass
class BreachModel:
    """A fitted, calibrated breach risk model: `predict_risk` is the chance a ticket misses its
    SLA, from what is known when it is opened (`BREACH_FEATURES`)."""

    pipeline: Any  # sklearn: features -> predict_proba, class 1 = missed
    family: str
    validation: dict[str, Any] = field(default_factory=dict)  # each family's validation figures
    version: str | None = None
    run_id: str | None = None

    def predict_risk(self, frame: pd.DataFrame) -> np.ndarray:
        if len(frame) == 0:
            return np.zeros(0)
        probabilities = self.pipeline.predict_proba(_features(frame))
        return probabilities[:, list(self.pipeline.classes_).index(1)].astype(np.float64)


def fit_breach_model(
    history: pd.DataFrame,
    *,
    validation_share: float = 0.2,
    families: Sequence[str] = FAMILIES,
    seed: int = 0,
) -> BreachModel:
    """Fit each family on the earlier part of `history` (by `opened_at`), keep the one with the
    better AUC on the later `validation_share`, and calibrate its probabilities on that part
    (isotonic with 1,000+ rows of each outcome, else sigmoid). Label: the SLA was missed."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator
    from threadpoolctl import threadpool_limits

    check_history(history)
    fit_part, validation = time_split(history, validation_share)
    y_fit, y_validation = missed(fit_part), missed(validation)
    for name, labels in (("the fitting part", y_fit), ("the validation part", y_validation)):
        if len(set(labels.tolist())) < 2:
            raise DataValidationError(
                f"history: {name} ({len(labels)} tickets) has only "
                f"{'missed' if labels.size and labels[0] else 'met'} SLAs: the model needs both"
            )
    figures: dict[str, Any] = {}
    fitted: dict[str, Any] = {}
    for family in families:
        # One OpenMP thread: on tens of thousands of rows the boosting's threads mostly wait
        # for each other (60 s instead of 5 s on a busy 2-core machine).
        with threadpool_limits(limits=1, user_api="openmp"):
            pipeline = build_pipeline(family, seed).fit(_features(fit_part), y_fit)
        risk = pipeline.predict_proba(_features(validation))[:, 1]
        figures[family] = {"auc": _auc(y_validation, risk), "brier": _brier(y_validation, risk)}
        fitted[family] = pipeline
    best = max(families, key=lambda family: figures[family]["auc"])
    fewest = int(min(np.bincount(y_validation, minlength=2)))
    # The model is frozen, so the folds only batch the validation rows.
    calibrated = CalibratedClassifierCV(
        FrozenEstimator(fitted[best]), method="isotonic" if fewest >= 1000 else "sigmoid", cv=min(5, fewest)
    ).fit(_features(validation), y_validation)
    return BreachModel(pipeline=calibrated, family=best, validation=figures)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(set(np.asarray(labels).tolist())) == 2 else None


def _brier(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(np.mean((np.asarray(scores, dtype=np.float64) - np.asarray(labels)) ** 2))


def calibration_table(
    labels: np.ndarray, risks: np.ndarray, bins: int = CALIBRATION_BINS
) -> list[dict[str, Any]]:
    """`bins` equal-width bins of the predicted risk (the last one includes 1.0): for each, the
    tickets in it, their mean predicted risk and their observed breach rate (None when empty)."""
    labels = np.asarray(labels, dtype=np.float64)
    risks = np.clip(np.asarray(risks, dtype=np.float64), 0.0, 1.0)
    which = np.minimum((risks * bins).astype(np.int64), bins - 1)
    table = []
    for index in range(bins):
        inside = which == index
        count = int(inside.sum())
        table.append(
            {
                "bin": f"{index / bins:.1f}-{(index + 1) / bins:.1f}",
                "count": count,
                "mean_predicted": float(risks[inside].mean()) if count else None,
                "observed": float(labels[inside].mean()) if count else None,
            }
        )
    return table


def expected_calibration_error(table: Sequence[dict[str, Any]]) -> float:
    """The count-weighted mean gap between predicted and observed in a calibration table."""
    total = sum(row["count"] for row in table)
    gaps = sum(row["count"] * abs(row["mean_predicted"] - row["observed"]) for row in table if row["count"])
    return gaps / total if total else 0.0


# ---------------------------------------------------------------------------------------------
# The rules-based estimate on history (the yardstick the model must beat)


def resolution_hours(history: pd.DataFrame) -> pd.Series:
    return (history["resolved_at"] - history["opened_at"]).dt.total_seconds() / 3600.0


def best_threshold(hours: np.ndarray, made: np.ndarray, candidates: int = 200) -> tuple[float, float]:
    """The resolution time (hours) that best separates met from missed SLAs - "met" predicted
    as resolved within it - and the share of tickets it gets right. Candidates: quantiles of
    `hours`. What a log without deadlines says about its SLA targets."""
    hours = np.asarray(hours, dtype=np.float64)
    made = np.asarray(made, dtype=bool)
    best = (float(np.median(hours)), -1.0)
    for threshold in np.unique(np.quantile(hours, np.linspace(0.0, 1.0, candidates + 1))):
        accuracy = float(np.mean((hours <= threshold) == made))
        if accuracy > best[1]:
            best = (float(threshold), accuracy)
    return best


@dataclass(frozen=True)
class RulesEstimate:
    """`rules_risk`'s inputs learned from the train part: the resolution target per priority
    (where a ticket has no deadline of its own, `hours_left`), each team's median resolution
    hours and its number of agents."""

    targets: dict[str, float]
    target_accuracy: dict[str, float]
    default_target: float
    medians: dict[str, float]
    default_median: float
    agents: dict[str, int]

    def risks(self, frame: pd.DataFrame, *, team_agents: bool) -> np.ndarray:
        """`rules_risk` of each ticket when it was opened: the whole target left, the queue
        ahead of it, the team's median handling; agents: 1, or the team's (`team_agents`)."""
        own = frame["hours_left"] if "hours_left" in frame.columns else pd.Series(np.nan, index=frame.index)
        risks = []
        for priority, team, queue, left in zip(
            frame["priority"], frame["team"], frame["queue_length"], own, strict=True
        ):
            hours_left = left if pd.notna(left) else self.targets.get(priority, self.default_target)
            risks.append(
                rules_risk(
                    float(hours_left),
                    int(queue),
                    self.medians.get(team, self.default_median),
                    self.agents.get(team, 1) if team_agents else 1,
                )
            )
        return np.asarray(risks, dtype=np.float64)


# A team's median from fewer resolved tickets than this is noise: the overall median instead.
MIN_TEAM_TICKETS = 5
# A median of zero would make every wait zero (and every risk 0).
MIN_MEDIAN_HOURS = 1 / 60


def fit_rules_estimate(train: pd.DataFrame) -> RulesEstimate:
    hours = resolution_hours(train)
    resolved = hours.notna() & (hours >= 0)
    part = train[resolved.to_numpy()].assign(hours=hours[resolved])
    if part.empty:
        raise DataValidationError("history: no ticket of the train part has a resolution time")
    default_target, default_accuracy = best_threshold(part["hours"].to_numpy(), part["made_sla"].to_numpy())
    targets, accuracy = {}, {}
    for priority, group in part.groupby("priority", sort=True):
        if group["made_sla"].nunique() < 2 or len(group) < MIN_TEAM_TICKETS:
            continue  # all met or all missed: no threshold separates them
        targets[str(priority)], accuracy[str(priority)] = best_threshold(
            group["hours"].to_numpy(), group["made_sla"].to_numpy()
        )
    default_median = max(float(part["hours"].median()), MIN_MEDIAN_HOURS)
    medians = {
        str(team): max(float(group["hours"].median()), MIN_MEDIAN_HOURS)
        for team, group in part.groupby("team", sort=True)
        if len(group) >= MIN_TEAM_TICKETS
    }
    agents: dict[str, int] = {}
    if "agent" in train.columns:
        known = train[train["agent"] != UNKNOWN]
        agents = {str(team): max(int(n), 1) for team, n in known.groupby("team")["agent"].nunique().items()}
    return RulesEstimate(
        targets=targets,
        target_accuracy={**accuracy, "all": default_accuracy},
        default_target=default_target,
        medians=medians,
        default_median=default_median,
        agents=agents,
    )


# ---------------------------------------------------------------------------------------------
# Evaluation: the model against the rules on the later part of the history

LEFT_OUT = (
    "Only what is known when a ticket is opened is a feature. Left out as leaking the outcome: "
    "the final assignment group, priority and category (the first logged state is used), "
    "reassignment/reopen/update counts, resolved_by, closed_code, resolution and close times; "
    "impact, urgency, contact type and the like are not leaks but not among BREACH_FEATURES."
)


def _figures(labels: np.ndarray, risks: np.ndarray) -> dict[str, Any]:
    table = calibration_table(labels, risks)
    return {
        "auc": _auc(labels, risks),
        "brier": _brier(labels, risks),
        "calibration_error": expected_calibration_error(table),
        "calibration": table,
    }


def auc_gain(
    labels: np.ndarray, model: np.ndarray, rules: np.ndarray, *, draws: int = 200, seed: int = 0
) -> dict[str, float | None]:
    """The model's AUC minus the rules' on the same tickets, with a 95% interval from a paired
    bootstrap (each draw resamples the tickets once and scores both)."""
    from sklearn.metrics import roc_auc_score

    labels, model, rules = np.asarray(labels), np.asarray(model), np.asarray(rules)
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(draws):
        pick = rng.integers(0, len(labels), len(labels))
        if labels[pick].min() == labels[pick].max():
            continue
        gains.append(roc_auc_score(labels[pick], model[pick]) - roc_auc_score(labels[pick], rules[pick]))
    point = _auc(labels, model), _auc(labels, rules)
    return {
        "gain": None if None in point else point[0] - point[1],  # type: ignore[operator]
        "low": float(np.quantile(gains, 0.025)) if gains else None,
        "high": float(np.quantile(gains, 0.975)) if gains else None,
    }


def evaluate_breach(
    history: pd.DataFrame, *, test_share: float = 0.2, seed: int = 0
) -> tuple[BreachModel, dict[str, Any]]:
    """Fit the model on the earlier part of `history` (by `opened_at`; its own validation is
    the last part of that) and judge it, and the rules estimate fitted on the same part, on the
    later `test_share`: AUC, Brier score and a calibration table each. The figures are the
    returned model's: it never saw the test part."""
    check_history(history)
    train, test = time_split(history, test_share)
    if len(set(missed(test).tolist())) < 2:
        raise DataValidationError(
            f"history: the test part ({len(test)} tickets) has only met or only missed SLAs: no AUC"
        )
    model = fit_breach_model(train, seed=seed)
    labels = missed(test)
    rules = fit_rules_estimate(train)
    own_deadlines = "hours_left" in history.columns and bool(history["hours_left"].notna().any())
    rules_figures = {
        "agents_one": _figures(labels, rules.risks(test, team_agents=False)),
        "agents_team": _figures(labels, rules.risks(test, team_agents=True)),
    }
    best_rules = max(rules_figures, key=lambda name: rules_figures[name]["auc"] or 0.0)
    model_risk = model.predict_risk(test)
    model_figures = _figures(labels, model_risk)
    rules_risk_best = rules.risks(test, team_agents=best_rules == "agents_team")
    base_rate = float(missed(train).mean())
    report = {
        "tickets": len(history),
        "train": len(train),
        "test": len(test),
        "test_from": test["opened_at"].min().isoformat(),
        "test_until": test["opened_at"].max().isoformat(),
        "breach_rate_train": base_rate,
        "breach_rate_test": float(labels.mean()),
        # What always predicting the train part's breach rate scores: the Brier score to beat.
        "brier_base_rate": _brier(labels, np.full(len(labels), base_rate)),
        "features": list(BREACH_FEATURES),
        "left_out": LEFT_OUT,
        "model": {"family": model.family, "validation": model.validation, **model_figures},
        "rules": {
            **rules_figures,
            "best": best_rules,
            "hours_left": "each ticket's resolution deadline"
            if own_deadlines
            else "the priority's target: the resolution time that best separates met from missed "
            "SLAs on the train part",
            "targets_hours": rules.targets,
            "target_accuracy": rules.target_accuracy,
            "median_hours": rules.default_median,
        },
        "beats_rules": (model_figures["auc"] or 0.0) > (rules_figures[best_rules]["auc"] or 0.0),
        # How sure the difference is: the test tickets resampled (the same draw for both).
        "auc_gain": auc_gain(labels, model_risk, rules_risk_best, seed=seed),
    }
    return model, report


# ---------------------------------------------------------------------------------------------
# MLflow: the run, the registered model, the champion


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in BREACH_REQUIREMENTS]


def log_breach_model(
    model: BreachModel,
    report: dict[str, Any],
    params: MlflowParams,
    *,
    example: pd.DataFrame,
    source: str,
    register: bool = True,
    promote_if_better: bool = False,
) -> dict[str, Any]:
    """Log the evaluation as an MLflow run (params, metrics, the report and its calibration
    tables) with the model (sklearn flavour, pickled, pinned requirements); with `register`,
    register it as
    `<model_prefix>-breach-risk` with its files' digests, and - with `promote_if_better` and
    only when its test AUC beats the rules estimate's - point the champion alias at it.
    Returns what happened (run id, version, champion set or why not)."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from urgency import tracking
    from urgency.models import DIGEST_TAG, recorded_digests, registry_client

    experiment_id = tracking.use_tracking(params.tracking_uri, params.experiment, params.artifact_location)
    name = params.model_name(BREACH_MODEL)
    features = _features(example.head(3))
    with mlflow.start_run(experiment_id=experiment_id, run_name=BREACH_MODEL) as run:
        mlflow.set_tags({"model": BREACH_MODEL, "family": model.family})
        mlflow.log_params(
            {
                "source": source,
                "family": model.family,
                "features": ",".join(BREACH_FEATURES),
                "label": "missed SLA (1 - made_sla)",
                "split": "time-ordered, last 20% by opened_at",
                "rows_train": report["train"],
                "rows_test": report["test"],
                "rules_hours_left": report["rules"]["hours_left"][:250],
            }
        )
        metrics = {
            "test_auc": report["model"]["auc"],
            "test_brier": report["model"]["brier"],
            "test_calibration_error": report["model"]["calibration_error"],
            "test_brier_base_rate": report["brier_base_rate"],
            "test_breach_rate": report["breach_rate_test"],
            "test_auc_gain": report["auc_gain"]["gain"],
            "test_auc_gain_low": report["auc_gain"]["low"],
            "test_auc_gain_high": report["auc_gain"]["high"],
        }
        for variant in ("agents_one", "agents_team"):
            metrics[f"rules_{variant}_test_auc"] = report["rules"][variant]["auc"]
            metrics[f"rules_{variant}_test_brier"] = report["rules"][variant]["brier"]
        for family, figures in report["model"]["validation"].items():
            metrics[f"{family}_validation_auc"] = figures["auc"]
            metrics[f"{family}_validation_brier"] = figures["brier"]
        mlflow.log_metrics({key: float(value) for key, value in metrics.items() if value is not None})
        mlflow.log_dict(report, "breach_risk_report.json")
        mlflow.log_dict(
            {
                "model": report["model"]["calibration"],
                **{v: report["rules"][v]["calibration"] for v in ("agents_one", "agents_team")},
            },
            "calibration.json",
        )
        info = mlflow.sklearn.log_model(
            model.pipeline,
            name="model",
            signature=infer_signature(features, model.pipeline.predict_proba(features)),
            input_example=features,
            pip_requirements=_requirements(),
            pyfunc_predict_fn="predict_proba",
            # Our own model; skops would need every sklearn type allowed by name.
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_PICKLE,
            metadata={"model": BREACH_MODEL, "family": model.family, "features": list(BREACH_FEATURES)},
        )
        if not register:
            return {
                "run_id": run.info.run_id,
                "model_uri": info.model_uri,
                "version": None,
                "champion": False,
            }
        version = tracking.register(
            info.model_uri,
            name,
            tags={
                "model": BREACH_MODEL,
                "family": model.family,
                "test_auc": f"{report['model']['auc']:.4f}",
                "rules_test_auc": f"{report['rules'][report['rules']['best']]['auc']:.4f}",
                DIGEST_TAG: recorded_digests(info.model_uri),
            },
        )
    champion = False
    if not promote_if_better:
        reason = "not asked (--promote-if-better)"
    elif not report["beats_rules"]:
        reason = "its test AUC does not beat the rules estimate's"
    else:
        registry_client(params.tracking_uri).set_registered_model_alias(
            name, params.champion_alias, str(version.version)
        )
        champion, reason = True, "its test AUC beats the rules estimate's"
    return {
        "run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "registered_name": name,
        "version": str(version.version),
        "champion": champion,
        "champion_reason": reason,
    }


def load_breach_model(params: MlflowParams) -> BreachModel | None:
    """The champion breach risk model (`<model_prefix>-breach-risk@<champion_alias>`), its files
    checked against the digests recorded at registration before they are unpickled; None when
    no version is the champion."""
    import mlflow.sklearn

    from urgency.models import download_verified, registry_client
    from urgency.tracking import alias_version

    database = params.tracking_uri.removeprefix("sqlite:///")
    if params.tracking_uri.startswith("sqlite:///") and not Path(database).exists():
        return None  # no registry at all (and asking would create an empty one)
    client = registry_client(params.tracking_uri)
    name = params.model_name(BREACH_MODEL)
    version = alias_version(client, name, params.champion_alias)
    if version is None:
        return None
    with tempfile.TemporaryDirectory(prefix="urgency-breach-") as staging:
        folder = download_verified(client, name, str(version.version), Path(staging))
        try:
            pipeline = mlflow.sklearn.load_model(str(folder))
        except Exception as error:  # whatever unpickling a damaged file raises
            raise ModelNotFoundError(
                f"cannot load {name} v{version.version}: {type(error).__name__}: {error}"
            ) from None
    return BreachModel(
        pipeline=pipeline,
        family=version.tags.get("family", ""),
        version=str(version.version),
        run_id=version.run_id,
    )


def breach_risk_report(
    histories: Mapping[str, tuple[pd.DataFrame, str]],
    params: MlflowParams,
    *,
    output: Path | None = None,
    promote_if_better: bool = False,
    test_share: float = 0.2,
    seed: int = 0,
) -> dict[str, Any]:
    """`urgency breach-risk`: each history (name -> (frame, where it came from): the incident
    log, a helpdesk's closed tickets) evaluated (`evaluate_breach`) and logged as an MLflow run;
    the model of the last one registered (a helpdesk's own history when given: its teams and
    categories are the ones it will score) and, with `promote_if_better`, made champion when
    it beats the rules. The report (JSON) is written to `output` atomically."""
    from urgency.files import write_text_atomic

    if not histories:
        raise ValueError("no history to fit the breach risk model on")
    registered = list(histories)[-1]
    result: dict[str, Any] = {"registered": registered}
    for name, (history, source) in histories.items():
        model, report = evaluate_breach(history, test_share=test_share, seed=seed)
        report = {"source": source, **report}
        report["mlflow"] = log_breach_model(
            model,
            report,
            params,
            example=history,
            source=source,
            register=name == registered,
            promote_if_better=promote_if_better,
        )
        result[name] = report
    if output is not None:
        write_text_atomic(json.dumps(result, indent=2, default=str) + "\n", output)
    return result

"""What the service serves with: the head models, the rules and what is known about them.

A `Runtime` is immutable. Switching models builds a new one and replaces the reference in one
assignment, so a request that already holds the old runtime finishes on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from serve.schemas import ExplanationStep, HeadModelInfo, ModelInfo, ScoreResult, Ticket
from urgency.config import HEADS, SIGNALS_MODEL, Params
from urgency.decision import Decision, iso
from urgency.errors import ModelNotFoundError
from urgency.models import HeadModel, ModelSource, load_models, registry_client, resolve
from urgency.predict import output_columns
from urgency.rules import RuleSet, load_rules
from urgency.scoring import frame_records, score_frame
from urgency.store import STORED_DECISION_FIELDS

# Request fields that become frame columns next to the metadata `fields`.
TICKET_COLUMNS = ("ticket_id", "subject", "body")


@dataclass(frozen=True)
class Runtime:
    params: Params
    models: dict[str, HeadModel]
    rules: RuleSet
    info: ModelInfo
    # The rules file's knowledge base, indexed and embedded once per runtime (None: no
    # `knowledge_base` section), and how a ticket's sentence vector is had (`serve.repeat`: the
    # served MiniLM model's pass; None: neither articles by meaning nor clusters need one).
    knowledge: Any = None
    vectors: Any = None

    @property
    def versions(self) -> dict[str, str]:
        return {head: model.version or model.uri for head, model in self.models.items()}

    def reserved_fields(self) -> set[str]:
        """Metadata names a ticket may not use: they would overwrite the models' columns."""
        return {*TICKET_COLUMNS, self.rules.spec.created_at.column, *output_columns(self.models)}

    def allowed_values(self) -> dict[str, set[str]]:
        """What a feedback event may say per field: the labels, levels and teams served."""
        # The heads only: the text signals' model is no decision an agent reports.
        allowed = {head: set(model.labels) for head, model in self.models.items() if head != SIGNALS_MODEL}
        allowed["priority"] = set(self.rules.levels)
        allowed["team"] = {team.name for team in self.rules.spec.teams}
        return allowed


def resolve_served(params: Params, *, model_dir: Path | None, alias: str | None) -> ModelSource:
    """The models the service serves, pinned but not loaded: every head with a model and the
    text signals' model, from `model_dir` or the registry `alias` (default: the champion)."""
    return resolve(
        None,
        model_dir=model_dir,
        tracking_uri=params.mlflow.tracking_uri,
        model_names={name: params.mlflow.model_name(name) for name in (*HEADS, SIGNALS_MODEL)},
        alias=alias or params.mlflow.champion_alias,
        signals=True,
    )


def load_runtime(
    params: Params, *, model_dir: Path | None, alias: str | None, keep_heads: Sequence[str] = ()
) -> Runtime:
    """Pin the models (the alias's versions now, or the folder), load exactly those, and the rules.
    The heads served are those that have a model (`urgency.models.resolve` with no heads asked
    for): a head without one is absent from /v1/model and null in every answer. `keep_heads` (a
    reload: the heads served now) must all still have one: a reload never silently drops a head
    whose champion alias was removed (ModelNotFoundError; the old models keep serving)."""
    alias = alias or params.mlflow.champion_alias
    source = resolve_served(params, model_dir=model_dir, alias=alias)
    gone = [head for head in keep_heads if head not in source.describe()]
    if gone:
        raise ModelNotFoundError(
            f"no {', '.join(gone)} model any more (its champion alias is gone): a reload keeps "
            "every head served; restart the service to serve fewer heads"
        )
    models = load_models(source)
    rules = load_rules(params.scoring.rules, category_labels=params.heads.category_labels)
    info = ModelInfo(
        heads=[_head_info(params, model, None if model_dir else alias) for model in models.values()],
        # The file's name and content digest, not its path: the answer tells no one the layout
        # of the server's disk.
        rules=Path(params.scoring.rules).name,
        rules_sha256=hashlib.sha256(Path(params.scoring.rules).read_bytes()).hexdigest(),
        loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    from serve.repeat import load_repeat

    knowledge, vectors = load_repeat(rules, models)
    return Runtime(params=params, models=models, rules=rules, info=info, knowledge=knowledge, vectors=vectors)


def model_texts(runtime: Runtime, subjects: Sequence[str | None], bodies: Sequence[str | None]) -> list[str]:
    """The text the models read for each ticket (`urgency.predict.model_input`'s): subject and
    body cleaned with the models' settings, then cut."""
    from urgency.predict import models_cleaning
    from urgency.text import ticket_text

    subject = pd.Series([text or "" for text in subjects], dtype=object)
    body = pd.Series([text or "" for text in bodies], dtype=object)
    cleaning = models_cleaning(runtime.models)
    return ticket_text(subject, body, runtime.params.data.max_text_chars, cleaning).tolist()


def registry_versions(params: Params, alias: str | None) -> dict[str, str]:
    """The versions the registry alias points at now (a cheap check before a reload)."""
    from urgency.tracking import alias_version

    client = registry_client(params.mlflow.tracking_uri)
    found = {}
    for head in (*HEADS, SIGNALS_MODEL):
        version = alias_version(client, params.mlflow.model_name(head), alias or params.mlflow.champion_alias)
        if version is not None:
            found[head] = str(version.version)
    return found


def _head_info(params: Params, model: HeadModel, alias: str | None) -> HeadModelInfo:
    digest, metrics = None, {}
    if model.run_id:
        from mlflow.exceptions import MlflowException

        from urgency.tracking import dataset_digest, run_metrics

        client = registry_client(params.mlflow.tracking_uri)
        try:
            digest = dataset_digest(client, model.run_id, "training")
            metrics = run_metrics(client, model.run_id, "test_")
        except MlflowException:
            pass  # a model folder from another tracking store: its run is not here
    return HeadModelInfo(
        head=model.head,
        registry_name=params.mlflow.model_name(model.head) if alias else None,
        version=model.version,
        alias=alias,
        source=model.uri,
        run_id=model.run_id,
        labels=list(model.labels),
        training_data_digest=digest,
        test_metrics=metrics,
    )


# ---------------------------------------------------------------------------------------------
# Scoring requests


def tickets_frame(tickets: Sequence[Ticket], created_at_column: str) -> pd.DataFrame:
    """Request tickets -> the frame `score_frame` reads (metadata fields as columns)."""
    records = []
    for ticket in tickets:
        record: dict[str, Any] = dict(ticket.fields)
        record.update(
            ticket_id=ticket.ticket_id,
            subject=ticket.subject or "",
            body=ticket.body,
        )
        record[created_at_column] = ticket.created_at.isoformat() if ticket.created_at else None
        records.append(record)
    return pd.DataFrame.from_records(records)


@dataclass(frozen=True)
class ScoredTicket:
    """One request ticket after scoring: its decision and the service's answer."""

    ticket: Ticket
    decision: Decision
    result: ScoreResult


def score_tickets(
    runtime: Runtime,
    tickets: Sequence[Ticket],
    *,
    now: datetime,
    surge: bool,
    before_decide: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> list[ScoredTicket]:
    """Score (predict, then decide: `urgency.scoring.score_frame`) each ticket; `before_decide`
    adds what the rules read besides the models (`serve.repeat.SimilarCheck`)."""
    frame = tickets_frame(tickets, runtime.rules.spec.created_at.column)
    scored = score_frame(
        runtime.models,
        frame,
        runtime.rules,
        now=now,
        surge=surge,
        subject_column="subject",
        body_column="body",
        max_text_chars=runtime.params.data.max_text_chars,
        before_decide=before_decide,
    )
    rows = frame_records(scored.predicted, list(scored.predicted.columns))
    return [
        ScoredTicket(ticket, decision, _result(runtime, row, decision))
        for ticket, row, decision in zip(tickets, rows, scored.decisions, strict=True)
    ]


def prediction_row(scored: ScoredTicket, scored_at: datetime) -> dict[str, Any]:
    """The store's `predictions` row of a scored ticket."""
    ticket, result = scored.ticket, scored.result
    return {
        "ticket_id": ticket.ticket_id,
        "scored_at": scored_at,
        "created_at": ticket.created_at,
        "subject": ticket.subject,
        "body": ticket.body,
        "fields": ticket.fields,
        **{name: getattr(scored.decision, name) for name in STORED_DECISION_FIELDS if name != "text_signals"},
        # Text, as a file has it: a query can look for tickets where a signal fired.
        "text_signals": scored.decision.text_signals_text or None,
        "decision": result.model_dump(mode="json", exclude={"model_versions"}),
        "model_versions": result.model_versions,
    }


def _result(runtime: Runtime, row: dict[str, Any], decision: Decision) -> ScoreResult:
    probabilities = {
        head: {label: row[f"{head}_proba_{label}"] for label in model.labels}
        for head, model in runtime.models.items()
        if head != SIGNALS_MODEL and row[head] is not None
    }
    created = row[runtime.rules.spec.created_at.column]
    return ScoreResult(
        ticket_id=str(row["ticket_id"]),
        priority=decision.priority,
        priority_title=decision.priority_title,
        urgency=decision.urgency,
        urgency_confidence=decision.urgency_confidence,
        urgency_used=decision.urgency_used,
        category=decision.category,
        category_confidence=decision.category_confidence,
        sentiment=decision.sentiment,
        sentiment_confidence=decision.sentiment_confidence,
        text_signals=dict(decision.text_signals),
        probabilities=probabilities,
        impact=decision.impact,
        team=decision.team,
        skills=list(decision.skills),
        sla_policy=decision.sla_policy,
        calendar=decision.calendar,
        created_at=None if created is None else str(created),
        first_response_due=iso(decision.first_response_due),
        resolution_due=iso(decision.resolution_due),
        needs_human_triage=decision.needs_human_triage,
        untrusted_heads=list(decision.untrusted_heads),
        surge=decision.surge,
        explanation=[ExplanationStep(**step.__dict__) for step in decision.explanation],
        explanation_text=decision.explanation_text,
        notes=list(decision.notes),
        error=row["error"],
        model_versions=runtime.versions,
    )

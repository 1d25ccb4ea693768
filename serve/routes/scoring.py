"""POST /v1/score and /v1/score/batch: models, then rules -> priority, team, deadlines and why.

Plain `def` endpoints: inference runs in FastAPI's thread pool, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

from serve.coalesce import Coalescer
from serve.deps import RuntimeDep, ScoreKey, ServiceDep, StoreDep
from serve.errors import ERRORS, invalid
from serve.runtime import Runtime, ScoredTicket, model_texts, prediction_row, score_tickets
from serve.schemas import (
    ArticleResult,
    DuplicateResult,
    ScoreBatchResult,
    ScoreResult,
    SimilarTicketResult,
    Ticket,
    TicketBatch,
    TicketCluster,
)
from serve.state import ServiceState
from urgency.backlog import Queues, agents_of, expected_first_response, order_key, rank_of
from urgency.decision import iso
from urgency.store import Store

if TYPE_CHECKING:
    from serve.repeat import SimilarCheck

router = APIRouter(tags=["scoring"])

# The batch limit is a setting: `serve.openapi` states this deployment's in the schema.
BATCH_DESCRIPTION = "Score up to `max_batch` tickets in one call ({max_batch} here)."


@router.post("/v1/score", response_model=ScoreResult, responses=ERRORS)
def score(
    ticket: Ticket, runtime_now: RuntimeDep, store: StoreDep, service: ServiceDep, _key: ScoreKey
) -> ScoreResult:
    """Score one ticket: models, then rules -> priority, team, deadlines and why."""
    if service.one_ticket is None:  # an app without its lifespan run: nothing to combine with
        return score_and_store(service, runtime_now, store, [ticket])[0]
    # Scored together with the worker's other concurrent requests (`serve.coalesce`).
    return service.one_ticket.submit(ticket, runtime_now)


@router.post(
    "/v1/score/batch",
    response_model=ScoreBatchResult,
    responses=ERRORS,
    description=BATCH_DESCRIPTION,
)
def score_batch(
    batch: TicketBatch, runtime_now: RuntimeDep, store: StoreDep, service: ServiceDep, _key: ScoreKey
) -> ScoreBatchResult:
    max_batch = service.settings.max_batch
    if len(batch.tickets) > max_batch:
        raise invalid(["body", "tickets"], f"at most {max_batch} tickets per call")
    return ScoreBatchResult(results=score_and_store(service, runtime_now, store, batch.tickets))


def one_ticket_scoring(service: ServiceState) -> Coalescer[Ticket, ScoreResult]:
    """What combines the worker's concurrent one-ticket requests into `score_and_store` calls
    (as many as a batch request may hold)."""

    def score(runtime_now: object, tickets: list[Ticket]) -> list[ScoreResult]:
        assert isinstance(runtime_now, Runtime) and service.store is not None
        return score_and_store(service, runtime_now, service.store, tickets)

    return Coalescer(score, max_items=service.settings.max_batch)


def score_and_store(
    service: ServiceState, runtime_now: Runtime, store: Store, tickets: list[Ticket]
) -> list[ScoreResult]:
    """Score the tickets, store a prediction row for each, count them in the metrics."""
    results, rows, keep_vectors = score_only(service, runtime_now, store, tickets)
    store.record_predictions(rows)
    keep_vectors()
    service.metrics.observe_results(results)
    service.metrics.call_tickets.observe(len(results))
    return results


def score_only(
    service: ServiceState, runtime_now: Runtime, store: Store, tickets: list[Ticket]
) -> tuple[list[ScoreResult], list[dict[str, Any]], Callable[[], int]]:
    """The tickets' results, their prediction rows (not yet stored), and what keeps their
    sentence vectors for the similar-tickets index: call it once the rows are stored, so an
    answer never acknowledged (a crash, a failed store) leaves no vector, and a duplicate check
    never finds a vector whose ticket the store does not know yet."""
    check_reserved(runtime_now, tickets)
    now = datetime.now(UTC)
    surge = service.surge(runtime_now, store, now, tickets)
    # The model-input texts, built once for the similar tickets and the repeat issues (only
    # when something reads them: a sentence vector or the knowledge base).
    wanted = runtime_now.vectors is not None or runtime_now.knowledge is not None
    subjects, bodies = [t.subject for t in tickets], [t.body for t in tickets]
    texts = model_texts(runtime_now, subjects, bodies) if wanted else []
    check = similar_check(service, runtime_now, store, tickets, texts, now)
    scored = told_expected(
        score_tickets(
            runtime_now,
            tickets,
            now=now,
            surge=surge,
            before_decide=check.before_decide if check is not None else None,
        ),
        service.queues(runtime_now, store, now),
        now,
    )
    scored = with_repeat_issues(service, runtime_now, scored, texts, now)
    if check is not None:
        scored = with_similar(scored, check)
    keep_vectors = check.record if check is not None else _nothing
    return [one.result for one in scored], [prediction_row(one, now) for one in scored], keep_vectors


def _nothing() -> int:
    return 0


def similar_check(
    service: ServiceState,
    runtime_now: Runtime,
    store: Store,
    tickets: list[Ticket],
    texts: list[str],
    now: datetime,
) -> SimilarCheck | None:
    """The request's similar-tickets and duplicate check (None: the rules file asks for neither);
    `texts` are the tickets' model-input texts (`model_texts`)."""
    index = service.similar_index(runtime_now)
    if index is None:
        return None
    from serve.repeat import SimilarCheck

    vectors = runtime_now.vectors
    zone = runtime_now.rules.spec.created_at.timezone
    return SimilarCheck(
        index=index,
        store=store,
        vectors=vectors,
        rules=runtime_now.rules,
        texts=texts,
        ids=[ticket.ticket_id for ticket in tickets],
        fields=[dict(ticket.fields) for ticket in tickets],
        created=[_instant(ticket.created_at, zone) or now for ticket in tickets],
    )


def with_similar(scored: list[ScoredTicket], check: SimilarCheck) -> list[ScoredTicket]:
    """Each result with its similar tickets and the ticket it probably duplicates."""
    told = []
    for n, one in enumerate(scored):
        update: dict[str, Any] = {}
        if check.similar is not None:
            update["similar_tickets"] = [
                SimilarTicketResult(**{**found.as_dict(), "similarity": round(found.similarity, 4)})
                for found in check.similar[n]
            ]
        if check.duplicates is not None and check.duplicates[n] is not None:
            match = check.duplicates[n].as_dict()
            update["duplicate_of"] = DuplicateResult(**{**match, "similarity": round(match["similarity"], 4)})
        told.append(replace(one, result=one.result.model_copy(update=update)) if update else one)
    return told


def told_expected(scored: list[ScoredTicket], queues: Queues, now: datetime) -> list[ScoredTicket]:
    """Each result with its expected first response (`urgency.backlog.expected_first_response`):
    the queue ahead is the team's open tickets before it in the queue's order, and the tickets
    of this batch before it."""
    placed = [
        (
            one.decision.team,
            one.ticket.ticket_id,
            order_key(
                rank_of(queues.levels, one.decision.priority),
                one.decision.first_response_due or one.decision.resolution_due,
                one.decision.created_at,
            ),
        )
        for one in scored
    ]
    # The batch's tickets before each in the queue's order, per team (a tie: the one sent first).
    in_batch = [0] * len(placed)
    by_team: dict[str, list[tuple[tuple[int, float, float], int]]] = {}
    for position, (team, _ticket_id, key) in enumerate(placed):
        by_team.setdefault(team, []).append((key, position))
    for members in by_team.values():
        for place, (_key, position) in enumerate(sorted(members)):
            in_batch[position] = place
    told = []
    for one, (team, ticket_id, key), before in zip(scored, placed, in_batch, strict=True):
        response_hours, response_from = queues.response(team)
        expected = expected_first_response(
            now=now,
            first_response_due=one.decision.first_response_due,
            queue_ahead=queues.ahead(team, ticket_id, key) + before,
            median_response_hours=response_hours,
            agents=agents_of(queues.agents, team),
            response_from=response_from,
        )
        result = one.result.model_copy(
            update={
                "expected_first_response_at": iso(expected.at),
                "expected_first_response": expected.sentence,
                "at_risk": expected.at_risk,
            }
        )
        told.append(replace(one, result=result))
    return told


def with_repeat_issues(
    service: ServiceState, runtime_now: Runtime, scored: list[ScoredTicket], raw: list[str], now: datetime
) -> list[ScoredTicket]:
    """Each result with its knowledge-base articles and the auto-reply's (rules `knowledge_base`)
    and the repeat-issue cluster it joined (rules `clusters`): one sentence vector per ticket,
    the one the served MiniLM model has just computed (`serve.repeat`); `raw` are the tickets'
    model-input texts (`model_texts`)."""
    knowledge, vectors = runtime_now.knowledge, runtime_now.vectors
    tracker = service.tracker(runtime_now)
    if knowledge is None and tracker is None:
        return scored
    from serve.repeat import answer

    texts = vectors.texts(raw) if vectors is not None else raw
    updates: list[dict[str, Any]] = [{} for _ in scored]
    if knowledge is not None:
        spec = runtime_now.rules.spec.knowledge_base
        for update, found in zip(
            updates, answer(knowledge, spec.k, spec.auto_reply_margin, texts), strict=True
        ):
            update["articles"] = [_article(match) for match in found.articles]
            update["auto_reply_articles"] = [_article(match) for match in found.auto_reply]
    if tracker is not None and vectors is not None:
        rows = [n for n, text in enumerate(texts) if text.strip()]
        embedded = vectors.vectors([texts[n] for n in rows]) if rows else []
        for n, vector in zip(rows, embedded, strict=True):
            ticket = scored[n].ticket
            created = _instant(ticket.created_at, runtime_now.rules.spec.created_at.timezone) or now
            added = tracker.add(ticket.ticket_id, vector, created, texts[n])
            if added.alert is not None:
                service.cluster_alerted(added.alert, runtime_now)
            updates[n]["cluster"] = TicketCluster(
                cluster_id=added.cluster_id,
                title=tracker.title(added.cluster_id),
                size=added.size,
                similarity=None if added.similarity is None else round(added.similarity, 4),
                alert=added.alert.explanation if added.alert is not None else None,
            )
    return [
        replace(one, result=one.result.model_copy(update=update)) if update else one
        for one, update in zip(scored, updates, strict=True)
    ]


def _instant(moment: datetime | None, timezone: str) -> datetime | None:
    """A ticket's created time as a UTC instant (no offset: the rules' time zone)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.astimezone(UTC)


def _article(match: Any) -> ArticleResult:
    return ArticleResult(
        id=match.article_id, title=match.title, url=match.url, score=match.score, why=match.why
    )


def check_reserved(runtime_now: Runtime, tickets: list[Ticket]) -> None:
    """A 422 for a metadata field named like a ticket or model column: it would overwrite it
    (checked before anything is scored or stored, so a refused batch stores nothing)."""
    reserved = runtime_now.reserved_fields()
    for position, ticket in enumerate(tickets):
        for name in ticket.fields:
            if name in reserved:
                loc: list[str | int] = ["body", "tickets", position] if len(tickets) > 1 else ["body"]
                raise invalid([*loc, "fields", name], f"{name!r} is reserved (a ticket or model column)")

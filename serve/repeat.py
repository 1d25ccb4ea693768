"""Repeat issues in the service: knowledge-base articles for every scored ticket, and the clusters
of the tickets this worker scored (issue 19; docs/repeat-issues.md "In the service").

Both read the ticket's sentence vector from the pass the served MiniLM model (the text signals'
model, or any MiniLM head) already made: its encoder, its settings and its cleaned text, so the
vector is a hit in `transformer_model.VECTORS`, not a second encoder pass. Without a served
MiniLM model, the packaged MiniLM embeds each ticket once for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from urgency.errors import InputError, ParamsError
from urgency.knowledge import ArticleMatch, KnowledgeBase, auto_reply_articles
from urgency.rules import RuleSet
from urgency.rules.schema import ClustersSection
from urgency.sentence_vectors import SharedVectors, packaged_vectors, served_vectors


def knowledge_folder(rules: RuleSet) -> Path:
    """The rules file's `knowledge_base.folder`, relative to the rules file."""
    spec = rules.spec.knowledge_base
    assert spec is not None
    folder = Path(spec.folder)
    return folder if folder.is_absolute() else Path(rules.source).parent / folder


def load_repeat(rules: RuleSet, models: dict[str, Any]) -> tuple[KnowledgeBase | None, SharedVectors | None]:
    """The knowledge base the rules file names (indexed, its articles embedded: a runtime's
    start-up, once) and how tickets are embedded (None: nothing needs a vector)."""
    spec = rules.spec.knowledge_base
    needs_vectors = (
        rules.spec.clusters is not None
        or rules.spec.similar_tickets is not None
        or rules.spec.duplicates is not None
        or (spec is not None and spec.method != "bm25")
    )
    vectors = (served_vectors(models) or packaged_vectors()) if needs_vectors else None
    if spec is None:
        return None, vectors
    folder = knowledge_folder(rules)
    try:
        knowledge = KnowledgeBase.load(folder, method=spec.method, base_url=spec.base_url)
    except InputError as error:
        raise ParamsError(f"{rules.source}: knowledge_base.folder: {error}") from None
    if vectors is not None:
        vectors.use_in(knowledge)
    return knowledge.prepare(), vectors


@dataclass(frozen=True)
class Answers:
    """One ticket's articles (top k) and those a customer-facing reply may carry."""

    articles: list[ArticleMatch]
    auto_reply: list[ArticleMatch]


def answer(knowledge: KnowledgeBase, k: int, margin: float, texts: Sequence[str]) -> list[Answers]:
    """Each text's top `k` articles, and the auto-reply's (`knowledge.auto_reply_articles`: the
    confidence needs a second article, so at least two are ranked). An empty text gets none."""
    found = knowledge.top([text or " " for text in texts], k=max(k, 2))
    return [
        Answers(matches[:k], auto_reply_articles(matches, margin)) if text.strip() else Answers([], [])
        for text, matches in zip(texts, found, strict=True)
    ]


def tracker_for(spec: ClustersSection) -> Any:
    from urgency.clusters import ClusterTracker

    return ClusterTracker(
        window=timedelta(days=spec.window_days),
        threshold=spec.threshold,
        burst=timedelta(minutes=spec.burst),
        min_count=spec.min_count,
        alpha=spec.alpha,
    )


def search_depth(spec: Any) -> int:
    """How many neighbours of each ticket the call's one search lists: enough for the similar
    tickets and the duplicate candidates, + 1 for the ticket itself when it is scored again."""
    return 1 + max(
        spec.similar_tickets.k if spec.similar_tickets is not None else 0,
        spec.duplicates.candidates if spec.duplicates is not None else 0,
    )


class KnownFacts:
    """The store's facts (`Store.ticket_facts`) of the call's tickets' nearest neighbours, read in
    one query, then answered per ticket: `similar_tickets` and `duplicate_of` read nothing else of
    the store, and one query per ticket was a tenth of a 16-ticket call. Only the neighbours those
    can use are read: the `k` + 1 nearest (similar tickets; + 1: the ticket itself, re-scored)
    and the duplicate candidates at the duplicate threshold or above; reading all 50 candidates
    of every ticket was 800 rows and a fifth of a 16-ticket call. A neighbour outside the first
    read (a window filter reaching further down the list) is read then."""

    def __init__(self, store: Any, index: Any, vectors: np.ndarray, spec: Any) -> None:
        self.store = store
        nearest = spec.similar_tickets.k + 1 if spec.similar_tickets is not None else 0
        duplicates = spec.duplicates
        threshold = duplicates.threshold if duplicates is not None else float("inf")
        rows = [vector for vector in vectors if np.isfinite(vector).all()]
        wanted = search_depth(spec)
        found = index.query(np.asarray(rows), wanted) if rows and wanted and len(index) else []
        self.facts = store.ticket_facts(
            [
                neighbour.ticket_id
                for neighbours in found
                for rank, neighbour in enumerate(neighbours)
                if rank < nearest or neighbour.similarity >= threshold
            ]
        )

    def ticket_facts(self, ticket_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        missing = [ticket_id for ticket_id in ticket_ids if ticket_id not in self.facts]
        if missing:
            self.facts.update(self.store.ticket_facts(missing))
        return {ticket_id: self.facts[ticket_id] for ticket_id in ticket_ids if ticket_id in self.facts}


@dataclass
class SimilarCheck:
    """One request's similar tickets and duplicate check (rules `similar_tickets`, `duplicates`):
    run between the models and the rules (`before_decide`), so the rules can read `duplicate`;
    then `record` keeps the tickets' vectors (store and index) for the next requests. A ticket's
    duplicate may also be an earlier ticket of the same call (`duplicates_in_batch`: a batch, or
    concurrent requests scored together), which the index does not hold yet."""

    index: Any  # urgency.similar.SimilarIndex
    store: Any  # urgency.store.Store
    vectors: SharedVectors
    rules: RuleSet
    texts: list[str]  # the model-input texts (`serve.runtime.model_texts`)
    ids: list[str]
    fields: list[dict[str, Any]]
    created: list[Any]  # each ticket's created instant (UTC)
    embedded: np.ndarray | None = None
    similar: list[list[Any]] | None = None  # per ticket: urgency.similar.SimilarTicket
    duplicates: list[Any] | None = None  # per ticket: urgency.duplicates.DuplicateMatch | None

    def before_decide(self, frame: Any) -> Any:
        """The frame the rules read, with `rules.engine.DUPLICATE_COLUMNS` (with `duplicates`)."""
        from urgency.duplicates import duplicate_of, duplicates_in_batch
        from urgency.rules.engine import DUPLICATE_COLUMNS
        from urgency.similar import PrefetchedIndex, similar_tickets

        spec = self.rules.spec
        embedded = self.vectors.of(self.texts)
        self.embedded = embedded
        # One search per ticket for the similar tickets, the duplicates and the facts.
        index = PrefetchedIndex(self.index, embedded, search_depth(spec))
        store = KnownFacts(self.store, index, embedded, spec)
        if spec.similar_tickets is not None:
            window = timedelta(days=spec.similar_tickets.window_days)
            self.similar = [
                similar_tickets(
                    index,
                    store,
                    vector,
                    spec.similar_tickets.k,
                    exclude_ids=[ticket_id],
                    created_after=created - window,
                )
                for vector, ticket_id, created in zip(embedded, self.ids, self.created, strict=True)
            ]
        if spec.duplicates is None:
            return frame
        columns = {name: info.column or name for name, info in self.rules.fields.items()}
        self.duplicates = [
            duplicate_of(
                index,
                store,
                vector,
                fields,
                spec.duplicates,
                ticket_id=ticket_id,
                created_at=created,
                columns=columns,
            )
            for vector, fields, ticket_id, created in zip(
                embedded, self.fields, self.ids, self.created, strict=True
            )
        ]
        in_batch = duplicates_in_batch(
            embedded, self.fields, self.ids, self.created, spec.duplicates, columns=columns
        )
        # One already stored comes first: it is the earlier ticket, where the helpdesk merges.
        self.duplicates = found = [
            stored or batch for stored, batch in zip(self.duplicates, in_batch, strict=True)
        ]
        return frame.assign(
            **{
                DUPLICATE_COLUMNS[0]: [match.ticket_id if match else None for match in found],
                DUPLICATE_COLUMNS[1]: [match.similarity if match else None for match in found],
                DUPLICATE_COLUMNS[2]: [match.explanation if match else None for match in found],
                DUPLICATE_COLUMNS[3]: [match.same if match else None for match in found],
            }
        )

    def record(self) -> int:
        """Keep the scored tickets' vectors (`urgency.similar.record_scored`); a ticket without
        text has none."""
        from urgency.similar import record_scored

        if self.embedded is None:
            return 0
        return record_scored(self.index, self.store, self.ids, self.embedded, self.created)

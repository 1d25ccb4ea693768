"""The knowledge base: each article format read, bad files named, BM25 / embedding / hybrid
answers (a tiny random BERT stands in for MiniLM), the measures, the labelled set's join; one
slow test reads the demo knowledge base with the real MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_transformer import make_tiny_checkpoint
from urgency.errors import DataValidationError, InputError
from urgency.knowledge import (
    AUTO_REPLY_MARGIN,
    ArticleMatch,
    EncoderSettings,
    KnowledgeBase,
    auto_reply_articles,
    choose_threshold,
    confidence,
    evaluate,
    load_ticket_articles,
    ranking_measures,
    read_articles,
    tokens,
)

PROJECT = Path(__file__).resolve().parents[1]

ZENDESK = {
    "articles": [
        {
            "id": 101,
            "url": "https://acme.zendesk.com/api/v2/help_center/en-us/articles/101.json",
            "html_url": "https://acme.zendesk.com/hc/en-us/articles/101-Refunds",
            "title": "Refunds and double charges",
            "body": "<p>Charged <b>twice</b>? The second charge is a pending authorisation.</p>",
            "draft": False,
            "locale": "en-us",
            "label_names": ["billing"],
        },
        {
            "id": 102,
            "html_url": "https://x/102",
            "title": "Unpublished",
            "body": "<p>soon</p>",
            "draft": True,
        },
    ],
    "next_page": None,
    "count": 2,
}


def write_kb(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vpn.md").write_text(
        "\n# VPN does not connect\n\nRestart the VPN client and connect to vpn.example.com again.\n"
    )
    (folder / "password.md").write_text(
        "# Reset your password\n\nUse the password portal to reset an expired password.\n"
    )
    (folder / "printer.html").write_text(
        "<html><head><title>Printer jams</title>"
        '<link rel="canonical" href="https://help.example.com/printer"></head>'
        "<body><h1>Printer jams</h1><p>Open the tray and remove the jammed paper.</p>"
        "<script>var x = 'vpn password';</script></body></html>"
    )
    (folder / "articles.json").write_text(json.dumps(ZENDESK))
    (folder / "notes.txt").write_text("not an article")
    (folder / ".hidden.md").write_text("# hidden\n\ntext")
    return folder


def test_each_format_is_read_with_its_title_text_and_url(tmp_path: Path) -> None:
    articles = {a.id: a for a in read_articles(write_kb(tmp_path / "kb"), base_url="https://kb.example.com/")}
    assert sorted(articles) == ["101", "password", "printer", "vpn"]  # no draft, no .txt, no hidden file
    assert articles["vpn"].title == "VPN does not connect"
    assert articles["vpn"].body.startswith("Restart the VPN client")
    assert articles["vpn"].url == "https://kb.example.com/vpn"
    assert articles["printer"].title == "Printer jams"
    assert articles["printer"].url == "https://help.example.com/printer"
    assert "remove the jammed paper" in articles["printer"].body
    assert "var x" not in articles["printer"].body and not articles["printer"].body.startswith("Printer jams")
    assert articles["101"].title == "Refunds and double charges"
    assert articles["101"].url == "https://acme.zendesk.com/hc/en-us/articles/101-Refunds"
    assert articles["101"].body == "Charged twice? The second charge is a pending authorisation."


def test_a_single_article_export_is_read(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps({"article": ZENDESK["articles"][0]}))
    assert [a.id for a in read_articles(tmp_path)] == ["101"]


@pytest.mark.parametrize(
    ("name", "content", "error", "message"),
    [
        ("empty.md", "\n  \n", DataValidationError, "empty.md: empty article"),
        ("notitle.md", "#\n\ntext", DataValidationError, "notitle.md: line 1: the title line has no title"),
        (
            "nobody.md",
            "# Title only\n\n",
            DataValidationError,
            "nobody.md: article 'Title only' has a title but no text",
        ),
        ("latin1.md", b"# Caf\xe9\n\ntext", InputError, "latin1.md: not UTF-8 text"),
        (
            "notitle.html",
            "<html><body><p>text</p></body></html>",
            DataValidationError,
            "notitle.html: no <title> or <h1>",
        ),
        ("broken.json", "{not json", InputError, "broken.json: not JSON"),
        ("list.json", "[1, 2]", DataValidationError, "list.json: not a Zendesk Help Center articles export"),
        (
            "noid.json",
            json.dumps({"articles": [{"title": "t", "body": "b"}]}),
            DataValidationError,
            r"noid.json: articles\[0\]: no id",
        ),
        (
            "item.json",
            json.dumps({"articles": ["x"]}),
            DataValidationError,
            r"item.json: articles\[0\]: not an object",
        ),
        (
            "emptybody.json",
            json.dumps({"articles": [{"id": 1, "title": "t", "body": "<p> </p>"}]}),
            DataValidationError,
            r"emptybody.json: articles\[0\] \('t'\): the body has no text",
        ),
    ],
)
def test_a_bad_article_file_is_an_error_naming_it(
    tmp_path: Path, name: str, content: str | bytes, error: type[Exception], message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(error, match=message):
        read_articles(tmp_path)


def test_two_articles_with_one_id_and_an_empty_or_missing_folder_are_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="knowledge-base folder not found"):
        read_articles(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no articles"):
        read_articles(tmp_path)
    (tmp_path / "vpn.md").write_text("# VPN\n\ntext")
    (tmp_path / "vpn.html").write_text("<title>VPN</title><p>text</p>")
    with pytest.raises(DataValidationError, match=r"vpn.md: article id 'vpn' is also in .*vpn.html"):
        read_articles(tmp_path)


def test_tokens_drop_stop_words_and_fold_plurals() -> None:
    assert tokens("Hello, please reset my passwords!") == ["reset", "password"]
    assert tokens("VPN connecting issues") == ["vpn", "connect", "issue"]


def test_bm25_answers_with_the_matching_words_and_never_loads_the_encoder(tmp_path: Path) -> None:
    kb = KnowledgeBase.load(
        write_kb(tmp_path / "kb"), method="bm25", encoder=EncoderSettings(folder=tmp_path / "none")
    )
    [vpn], [nothing], [refund] = (
        kb.top(["my vpn will not connect"], k=1),
        kb.top(["hello please"], k=3),
        kb.top(["I was charged twice"], k=2),
    )
    assert vpn[0].article_id == "vpn" and isinstance(vpn[0], tuple)
    assert vpn[0].why.startswith("words vpn, connect (BM25")
    assert nothing == []  # no shared word: no article
    assert refund[0].article_id == "101" and refund[0].url.endswith("101-Refunds")
    with pytest.raises(ValueError, match="k must be at least 1"):
        kb.top(["x"], k=0)
    assert kb.top([]) == [] and kb.top([None, ""]) == [[], []]  # type: ignore[list-item]
    with pytest.raises(ValueError, match="method 'fuzzy'"):
        KnowledgeBase(kb.articles, method="fuzzy")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bert"))


def test_embedding_and_hybrid_answers_on_a_tiny_bert(tmp_path: Path, tiny_checkpoint: Path) -> None:
    encoder = EncoderSettings(folder=tiny_checkpoint, max_length=64)
    kb = KnowledgeBase.load(write_kb(tmp_path / "kb"), method="embedding", encoder=encoder).prepare()
    assert kb._article_vectors.shape == (4, 32)  # prepared before the first question
    vectors = kb.embed(["vpn broken", "printer"])
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    [ranked] = kb.top(["vpn broken"], k=4)
    assert len(ranked) == 4 and sorted(m.article_id for m in ranked) == ["101", "password", "printer", "vpn"]
    scores = [m.score for m in ranked]
    assert scores == sorted(scores, reverse=True) and all(-1.001 <= s <= 1.001 for s in scores)
    assert all(m.why.startswith(("meaning", "words")) for m in ranked)
    # The hybrid adds the squashed BM25 score to the cosine: the word match lifts the article.
    cosine = dict(zip([a.id for a in kb.articles], kb.embedding_scores(["vpn connect"])[0], strict=True))
    [hybrid] = kb.top(["vpn connect"], k=4, method="hybrid")
    by_id = {m.article_id: m for m in hybrid}
    assert by_id["vpn"].score > cosine["vpn"]
    assert by_id["printer"].score == pytest.approx(cosine["printer"], abs=1e-4)
    assert "words vpn, connect" in by_id["vpn"].why and "meaning" in by_id["vpn"].why


def test_the_confidence_and_the_auto_reply() -> None:
    sure = [ArticleMatch("a", "A", "u", 0.9, ""), ArticleMatch("b", "B", "u", 0.5, "")]
    unsure = [ArticleMatch("a", "A", "u", 0.9, ""), ArticleMatch("b", "B", "u", 0.85, "")]
    assert confidence(sure) == pytest.approx(0.4) and confidence([]) == 0.0
    assert auto_reply_articles(sure) == sure[:1]
    assert auto_reply_articles(unsure) == [] and auto_reply_articles([]) == []
    assert auto_reply_articles(unsure, threshold=0.01) == unsure[:1]
    assert 0 < AUTO_REPLY_MARGIN < 1


def test_ranking_measures_by_hand() -> None:
    ranked = [["a", "b", "c"], ["b", "a", "c"], ["c", "b", "a"], ["a"]]
    relevant = [frozenset({"a"}), frozenset({"a", "c"}), frozenset({"x"}), frozenset()]
    measures = ranking_measures(ranked, relevant)  # the last ticket has no article: not counted
    assert measures["precision_at_1"] == pytest.approx(1 / 3)
    assert measures["precision_at_3"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert measures["recall_at_3"] == pytest.approx((1 + 1 + 0) / 3)
    assert measures["mrr"] == pytest.approx((1 + 1 / 2 + 0) / 3)


def test_choose_threshold_is_the_lowest_score_keeping_the_precision() -> None:
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    correct = [True, True, False, True, False]
    has = [True, True, True, True, False]
    threshold, precision, coverage, answered_none = choose_threshold(scores, correct, has, target=0.75)
    assert (threshold, precision, coverage, answered_none) == (0.6, 0.75, 0.75, 0)
    assert choose_threshold(scores, [False] * 5, has)[0] is None


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 1, allow_nan=False), st.booleans(), st.booleans()), min_size=1, max_size=40
    ),
    st.floats(0.5, 1.0),
)
def test_the_chosen_threshold_keeps_its_precision(
    rows: list[tuple[float, bool, bool]], target: float
) -> None:
    scores = [r[0] for r in rows]
    correct = [r[1] and r[2] for r in rows]  # only a ticket with an article can be answered right
    has = [r[2] for r in rows]
    threshold, precision, coverage, _ = choose_threshold(scores, correct, has, target)
    if threshold is not None:
        answered = np.asarray(scores) >= threshold
        assert np.asarray(correct)[answered].mean() >= target - 1e-12
        assert precision >= target - 1e-12 and 0 <= coverage <= 1


def _labelled_fixture(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "shared"
    data.mkdir()
    pd.DataFrame(
        {"Document": ["vpn will not connect", "printer paper jam"], "Topic_group": ["Access", "Hardware"]}
    ).to_csv(data / "it_helpdesk_topics.csv", index=False)
    pd.DataFrame({"subject": ["Refund", None], "body": ["I was charged twice", "hello"]}).to_csv(
        data / "support_tickets_synthetic.csv", index=False
    )
    from urgency.knowledge import ticket_digest

    labels = pd.DataFrame(
        {
            "source": [
                "it_helpdesk_topics",
                "it_helpdesk_topics",
                "support_tickets_synthetic",
                "support_tickets_synthetic",
            ],
            "row": [0, 1, 0, 1],
            "text_sha256": [
                ticket_digest(None, "vpn will not connect"),
                ticket_digest(None, "printer paper jam"),
                ticket_digest("Refund", "I was charged twice"),
                ticket_digest(None, "hello"),
            ],
            "articles": ["vpn", "printer", "101", ""],
            "note": ["", "", "", "no article"],
        }
    )
    path = tmp_path / "ticket_articles.csv"
    labels.to_csv(path, index=False)
    return path, data


def test_the_labelled_set_joins_by_row_and_digest_and_evaluates(tmp_path: Path) -> None:
    path, data = _labelled_fixture(tmp_path)
    labelled = load_ticket_articles(path, data)
    assert labelled["text"].tolist() == [
        "vpn will not connect",
        "printer paper jam",
        "Refund\nI was charged twice",
        "hello",
    ]
    assert labelled["relevant"].tolist() == [
        frozenset({"vpn"}),
        frozenset({"printer"}),
        frozenset({"101"}),
        frozenset(),
    ]
    kb = KnowledgeBase.load(write_kb(tmp_path / "kb"), method="bm25")
    report = evaluate(kb, labelled, "bm25")
    assert report.tickets == 3 and report.precision_at_1 == 1.0 and report.mrr == 1.0
    assert report.threshold is not None and report.coverage == 1.0 and report.answered_none == 0
    # A changed shared file: the digest no longer matches, and the error names both files.
    pd.DataFrame({"Document": ["something else", "printer paper jam"]}).to_csv(
        data / "it_helpdesk_topics.csv", index=False
    )
    with pytest.raises(
        DataValidationError,
        match=r"ticket_articles.csv: 1 label\(s\) do not match .*it_helpdesk_topics.csv: row 0 \(digest\)",
    ):
        load_ticket_articles(path, data)


def test_the_shipped_labelled_set_names_only_demo_articles() -> None:
    labels = pd.read_csv(PROJECT / "data/labelled/ticket_articles.csv", keep_default_na=False, dtype=str)
    ids = {a.id for a in read_articles(PROJECT / "data/knowledge_base")}
    named = {article for value in labels["articles"] for article in value.split(";") if article}
    assert named <= ids
    assert 60 <= len(labels) <= 150 and labels["text_sha256"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert 15 <= len(ids) <= 30


@pytest.mark.slow
def test_the_demo_knowledge_base_with_the_real_minilm() -> None:
    kb = KnowledgeBase.load(PROJECT / "data/knowledge_base")
    answers = kb.top(
        [
            "My password has expired and I need to reset it",
            "Nobody in the office can connect to the VPN since 9am",
            "please approve my vacation days in the HR portal",
        ],
        k=3,
    )
    assert [matches[0].article_id for matches in answers] == [
        "password-reset",
        "vpn-connect",
        "leave-request",
    ]
    assert all("meaning" in matches[0].why for matches in answers)

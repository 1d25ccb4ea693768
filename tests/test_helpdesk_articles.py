"""Knowledge-base articles in the helpdesk's terms: the internal note lists them, the write-back
values carry the confident one for the customer-facing reply (params `articles_field`)."""

from __future__ import annotations

from typing import Any

from urgency.config import HelpdeskParams
from urgency.helpdesks import helpdesk_values

ARTICLES = [
    {
        "id": "vpn-connect",
        "title": "VPN does not connect",
        "url": "https://kb/vpn-connect",
        "score": 0.74,
        "why": "words connect, vpn (BM25 2.6); meaning 0.59",
    },
    {
        "id": "vpn-setup",
        "title": "Set up the VPN",
        "url": "https://kb/vpn-setup",
        "score": 0.41,
        "why": "words vpn (BM25 1.1); meaning 0.35",
    },
]


def _values(mapping: HelpdeskParams, **given: Any) -> dict[str, Any]:
    return helpdesk_values(
        priority="P2",
        priority_title="High",
        team="desk",
        needs_human_triage=False,
        first_response_due=None,
        resolution_due=None,
        explanation="matrix",
        mapping=mapping,
        **given,
    )


def test_the_note_lists_the_articles_and_the_field_quotes_the_confident_one() -> None:
    mapping = HelpdeskParams(articles_field="cf_suggested_article", expected_reply_field="cf_reply")
    values = _values(
        mapping, articles=ARTICLES, auto_reply_articles=ARTICLES[:1], expected_first_response="Soon."
    )
    note = values["note"].splitlines()
    assert (
        "article 1: VPN does not connect https://kb/vpn-connect (score 0.74: words connect, vpn" in note[-2]
    )
    assert note[-1].startswith("article 2: Set up the VPN")
    assert values["auto_reply_articles"] == [
        {"id": "vpn-connect", "title": "VPN does not connect", "url": "https://kb/vpn-connect"}
    ]
    assert values["fields"] == {
        "cf_reply": "Soon.",
        "cf_suggested_article": "VPN does not connect - https://kb/vpn-connect",
    }


def test_without_a_confident_article_nothing_is_quoted_and_the_shape_is_as_before() -> None:
    mapping = HelpdeskParams(articles_field="cf_suggested_article")
    values = _values(mapping, articles=ARTICLES)
    assert "auto_reply_articles" not in values and values["fields"] == {}
    assert _values(mapping) == {**values, "note": values["note"].rsplit("\narticle 1", 1)[0]}
    # No field named: the values carry the article, no field is set.
    values = _values(HelpdeskParams(), articles=ARTICLES, auto_reply_articles=ARTICLES[:1])
    assert values["fields"] == {} and values["auto_reply_articles"][0]["id"] == "vpn-connect"

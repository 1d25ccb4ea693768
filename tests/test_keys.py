"""API keys (urgency.keys): a new key and its settings entry."""

from __future__ import annotations

import pytest

from serve.settings import ApiKey
from urgency.keys import SCOPES, hash_key, new_key


def test_a_new_key_is_random_and_only_its_digest_is_in_the_entry() -> None:
    key, entry = new_key("helpdesk", ["score", "feedback", "score"])
    other, _ = new_key("helpdesk", ["score"])
    assert key != other and len(key) >= 40
    assert entry == {"name": "helpdesk", "sha256": hash_key(key), "scopes": ["score", "feedback"]}
    assert ApiKey(**entry).scopes == ("score", "feedback")  # the service accepts the entry


def test_unknown_scopes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown scope\(s\) \['root'\]"):
        new_key("x", ["score", "root"])
    assert SCOPES == ("score", "feedback", "admin")

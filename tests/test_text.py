from __future__ import annotations

import pandas as pd

from urgency.text import as_text, ticket_text


def test_ticket_text_joins_and_cuts() -> None:
    subject = pd.Series(["Help", None, "  ", "Title"])
    body = pd.Series(["body one", "only body", "b", None])
    assert ticket_text(subject, body, 100).tolist() == ["Help\nbody one", "only body", "b", "Title"]
    assert ticket_text(None, body, 4).tolist() == ["body", "only", "b", ""]


def test_as_text_strips_and_fills_missing() -> None:
    values = pd.Series([" a ", None, float("nan"), 3, pd.NA])
    assert as_text(values).tolist() == ["a", "", "", "3", ""]

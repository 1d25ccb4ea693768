"""The text a model reads. Training (`urgency.data`) and prediction (`urgency.predict`) both build
model input here, so the two cannot drift apart; prediction needs nothing else of the training
data code (and so the service does not load it)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def ticket_text(subject: pd.Series | None, body: pd.Series, max_chars: int) -> pd.Series:
    """The text a model reads: subject and body on two lines, cut to `max_chars`."""
    body_text = as_text(body)
    if subject is None:
        text = body_text
    else:
        subject_text = as_text(subject)
        joiner = np.where((subject_text != "") & (body_text != ""), "\n", "")
        text = subject_text + joiner + body_text
    return text.str.slice(0, max_chars)


def as_text(values: pd.Series) -> pd.Series:
    """Values as text without surrounding white space; a missing value is the empty string."""
    return values.astype("string").fillna("").str.strip().astype(object)

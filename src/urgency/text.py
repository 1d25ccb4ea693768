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


def normalise_language(values: pd.Series) -> pd.Series:
    """Language tags reduced to their primary subtag, lower-cased: `en-US`, `en_us` and ` EN `
    are all `en`, so shares (drift, reports) and rules compare one tag per language. A missing
    or blank tag stays missing."""
    tags = values.astype("string").str.strip().str.lower().str.replace("_", "-", regex=False)
    return tags.str.split("-", n=1).str[0].replace("", pd.NA).astype("string")

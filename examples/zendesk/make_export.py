"""Write a Zendesk-like JSON Lines export from the public synthetic support tickets.

The guide `docs/own-helpdesk.md` walks this file through every command. It has what a real
helpdesk export has and the demo data does not: HTML bodies (paragraphs, line breaks, entities),
quoted replies and signatures, empty titles, the helpdesk's own priority names
(urgent/high/normal/low), groups instead of categories, a customer plan, no language column and
no sentiment labels. Made from `support_tickets_synthetic.csv` (see data/README.md): its
`priority` becomes the agents' priority, its `queue` the group.

    python examples/zendesk/make_export.py ../shared/data/support_tickets_synthetic.csv \\
        data/zendesk_export.jsonl data/zendesk_new.jsonl
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

PLANS = ("enterprise", "premium", "standard", "free")
PLAN_SHARES = (0.1, 0.2, 0.4, 0.3)


def as_html(text: str) -> str:
    """Paragraphs as `<p>`, line breaks as `<br>`, special characters as entities."""
    paragraphs = [part for part in str(text).replace("\\n", "\n").split("\n\n") if part.strip()]
    inner = "".join(
        "<p>" + "<br>".join(html.escape(line) for line in part.split("\n")) + "</p>" for part in paragraphs
    )
    return f'<div dir="ltr">{inner}</div>'


def zendesk_export(tickets: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """`tickets` (columns subject, body, priority high/medium/low, queue, type) as a Zendesk-like
    export: ticket_id, title, description (HTML), priority, group, created_at, organization_plan."""
    rng = np.random.default_rng(seed)
    # The public file is grouped (its last fifth is mostly Spanish, Portuguese and French): in
    # a random order, the newest tickets are like the older ones, as in a steady helpdesk.
    tickets = tickets.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    rows = len(tickets)
    priority = tickets["priority"].map({"high": "high", "medium": "normal", "low": "low"})
    # Zendesk's top priority: the incidents among the high ones.
    priority = priority.where(~((tickets["priority"] == "high") & (tickets["type"] == "Incident")), "urgent")
    description = [as_html(body) for body in tickets["body"]]
    for position in np.flatnonzero(rng.random(rows) < 0.2):  # a signature
        description[position] += "<p>-- <br>Alex Meyer<br>IT lead, Example GmbH<br>+49 30 1234567</p>"
    for position in np.flatnonzero(rng.random(rows) < 0.2):  # a reply quoting the last message
        description[position] += (
            '<div class="gmail_quote"><div>On Mon, 2 Nov 2026 at 09:14, Support &lt;support@example.com&gt; '
            "wrote:</div><blockquote>Thank you for contacting us. Could you send a screenshot?"
            "</blockquote></div>"
        )
    title = tickets["subject"].fillna("").astype(str).where(rng.random(rows) >= 0.1, "")
    start = pd.Timestamp("2026-01-05T08:00:00Z")
    created = start + pd.to_timedelta(np.cumsum(rng.integers(1, 90, rows)), unit="min")
    return pd.DataFrame(
        {
            "ticket_id": np.arange(100_001, 100_001 + rows),
            "title": title.to_numpy(),
            "description": description,
            "priority": priority.to_numpy(),
            "group": tickets["queue"].to_numpy(),
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "organization_plan": rng.choice(PLANS, size=rows, p=PLAN_SHARES),
        }
    )


def write_jsonl(frame: pd.DataFrame, path: Path) -> None:
    with path.open("w", encoding="utf-8") as file:
        for record in frame.to_dict(orient="records"):
            file.write(json.dumps(record, ensure_ascii=False, default=int) + "\n")


def main(source: Path, output: Path, new_history: Path, new_share: float = 0.2) -> None:
    """The older tickets to `output` (the export trained on), the newest `new_share` to
    `new_history` (what arrives later: evaluated on, then retrained with)."""
    export = zendesk_export(pd.read_csv(source))
    output.parent.mkdir(parents=True, exist_ok=True)
    new_history.parent.mkdir(parents=True, exist_ok=True)
    cut = int(len(export) * (1 - new_share))
    write_jsonl(export.iloc[:cut], output)
    write_jsonl(export.iloc[cut:], new_history)
    print(f"wrote {cut} tickets to {output} and {len(export) - cut} newer ones to {new_history}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))

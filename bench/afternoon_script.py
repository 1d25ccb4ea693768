"""The anchor for batch speed: what a data scientist writes in an afternoon instead of `urgency`.

Word TF-IDF and a logistic regression per head (urgency, category, sentiment), trained straight
from the public CSVs with pandas, saved with joblib; prediction reads a CSV with pandas, scores
every head and writes a CSV. No cleaning, no validation, no registry, no chunking: the script
`bench/bench_batch.py` runs beside `urgency predict`, in the same run, on the same file.

    python bench/afternoon_script.py train --data ../shared/data --out /tmp/afternoon
    python bench/afternoon_script.py predict --models /tmp/afternoon -i tickets.csv -o scored.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

JIRA_URGENCY = {"Blocker": "high", "Critical": "high", "Major": "medium", "Minor": "low", "Trivial": "low"}


def labelled_frames(data: Path) -> dict[str, pd.DataFrame]:
    """text, label per head, the way a quick script would read the files."""
    support = pd.read_csv(data / "support_tickets_synthetic.csv")
    jira = pd.read_csv(data / "jira_issues_priority.csv")
    topics = pd.read_csv(data / "it_helpdesk_topics.csv")
    tweets = pd.read_csv(data / "airline_tweets_sentiment.csv")
    urgency = pd.concat(
        [
            pd.DataFrame(
                {
                    "text": support["subject"].fillna("") + " " + support["body"].fillna(""),
                    "label": support["priority"],
                }
            ),
            pd.DataFrame(
                {
                    "text": jira["summary"].fillna("") + " " + jira["description"].fillna(""),
                    "label": jira["priority"].map(JIRA_URGENCY),
                }
            ),
        ]
    )
    return {
        "urgency": urgency.dropna(),
        "category": pd.DataFrame({"text": topics["Document"], "label": topics["Topic_group"]}).dropna(),
        "sentiment": pd.DataFrame({"text": tweets["text"], "label": tweets["airline_sentiment"]}).dropna(),
    }


def train(data: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for head, frame in labelled_frames(data).items():
        train_rows, test_rows = train_test_split(frame, test_size=0.15, random_state=42)
        model = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
            LogisticRegression(max_iter=1000, class_weight="balanced"),
        )
        model.fit(train_rows["text"], train_rows["label"])
        f1 = f1_score(test_rows["label"], model.predict(test_rows["text"]), average="macro")
        joblib.dump(model, out / f"{head}.joblib")
        print(f"{head}: held-back macro-F1 {f1:.3f} ({len(test_rows)} rows)")


def predict(models: Path, input_path: Path, output_path: Path) -> None:
    tickets = pd.read_csv(input_path)
    text = tickets["subject"].fillna("") + " " + tickets["body"].fillna("")
    for head in ("urgency", "category", "sentiment"):
        model = joblib.load(models / f"{head}.joblib")
        proba = model.predict_proba(text)
        tickets[head] = model.classes_[proba.argmax(axis=1)]
        tickets[f"{head}_confidence"] = proba.max(axis=1)
    tickets.to_csv(output_path, index=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("train")
    fit.add_argument("--data", type=Path, default=Path("../shared/data"))
    fit.add_argument("--out", type=Path, required=True)
    run = commands.add_parser("predict")
    run.add_argument("--models", type=Path, required=True)
    run.add_argument("-i", "--input", type=Path, required=True)
    run.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "train":
        train(args.data, args.out)
    else:
        predict(args.models, args.input, args.output)


if __name__ == "__main__":
    main()

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from urgency.data import configured_head_dataset, load_configured
from urgency.thresholds import choose_threshold, choose_thresholds, rules_thresholds


def _probabilities(confidences: list[float], predicted: list[str]) -> pd.DataFrame:
    """Two-label probabilities whose argmax is `predicted` with the given confidence."""
    rows = [
        {"a": c, "b": 1 - c} if p == "a" else {"a": 1 - c, "b": c}
        for c, p in zip(confidences, predicted, strict=True)
    ]
    return pd.DataFrame(rows, columns=["a", "b"])


# Sorted by confidence: 0.95 right, 0.9 right, 0.8 wrong, 0.7 right, 0.6 wrong.
CONFIDENCE = [0.6, 0.95, 0.7, 0.8, 0.9]
PREDICTED = ["a", "a", "b", "b", "a"]
TRUTH = ["b", "a", "b", "a", "a"]


@pytest.mark.parametrize(
    ("target", "threshold", "precision", "coverage"),
    [
        (1.0, 0.9, 1.0, 0.4),  # the two most confident are right
        (0.75, 0.7, 0.75, 0.8),  # 3 of the top 4 are right
        (0.6, 0.6, 0.6, 1.0),  # everything
        (0.67, 0.7, 0.75, 0.8),  # top 3 is 2/3 < 0.67; top 4 reaches it with more coverage
    ],
)
def test_lowest_threshold_that_reaches_the_target(
    target: float, threshold: float, precision: float, coverage: float
) -> None:
    choice = choose_threshold("urgency", TRUTH, _probabilities(CONFIDENCE, PREDICTED), target)
    assert choice.threshold == pytest.approx(threshold)
    assert choice.precision == pytest.approx(precision)
    assert choice.coverage == pytest.approx(coverage)
    assert choice.accuracy == pytest.approx(0.6) and choice.n == 5


def test_tied_confidences_are_accepted_or_refused_together() -> None:
    # Both 0.9 predictions share a threshold: one right and one wrong give 0.5, not 1.0.
    choice = choose_threshold("h", ["a", "b", "a"], _probabilities([0.9, 0.9, 0.6], ["a", "a", "a"]), 0.9)
    assert choice.threshold is None and choice.coverage == 0.0


def test_unreachable_target_and_empty_input() -> None:
    choice = choose_threshold("h", ["b", "b"], _probabilities([0.9, 0.8], ["a", "a"]), 0.5)
    assert choice.threshold is None and choice.coverage == 0.0 and choice.accuracy == 0.0
    empty = choose_threshold("h", np.array([], dtype=object), _probabilities([], []), 0.5)
    assert empty.n == 0 and empty.threshold is None
    with pytest.raises(ValueError, match="target precision"):
        choose_threshold("h", ["a"], _probabilities([0.9], ["a"]), 0.0)


def test_rules_thresholds_trust_nothing_where_the_target_is_unreachable() -> None:
    reached = choose_threshold("a", TRUTH, _probabilities(CONFIDENCE, PREDICTED), 0.75)
    unreachable = choose_threshold("b", ["b", "b"], _probabilities([0.9, 0.8], ["a", "a"]), 0.5)
    assert rules_thresholds({"a": reached, "b": unreachable}) == {"a": 0.7, "b": 1.0}


def test_choose_thresholds_on_a_split_of_the_configured_data(
    trained: dict[str, Any], models: dict[str, Any]
) -> None:
    params = trained["params"]
    choices = choose_thresholds(models, params, ["urgency", "sentiment"], split="test", target_precision=0.5)
    assert list(choices) == ["urgency", "sentiment"]
    tickets = load_configured(params.data).tickets
    for head, choice in choices.items():
        dataset = configured_head_dataset(tickets, head, params.data, params.splits)
        assert choice.head == head and choice.target_precision == 0.5
        assert choice.n == int((dataset["split"] == "test").sum()) > 0

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from urgency.evaluate import classification_report, expected_calibration_error, flat_metrics, quality_table


def test_ece_hand_computed() -> None:
    # Two bins hold rows: 0.9 (2 rows, 1 right) and 0.6 (2 rows, both right).
    confidence = np.array([0.9, 0.9, 0.6, 0.6])
    correct = np.array([True, False, True, True])
    expected = 0.5 * abs(0.9 - 0.5) + 0.5 * abs(0.6 - 1.0)
    assert expected_calibration_error(confidence, correct, bins=10) == pytest.approx(expected)
    assert expected_calibration_error(np.array([]), np.array([])) == 0.0


def test_perfectly_calibrated_is_zero() -> None:
    assert expected_calibration_error(np.ones(5), np.ones(5, dtype=bool)) == pytest.approx(0.0)


def test_classification_report_hand_case() -> None:
    labels = ["high", "medium", "low"]
    y_true = ["high", "high", "medium", "low", "low", "low"]
    # Predicted: high, medium, medium, low, low, high
    probabilities = pd.DataFrame(
        [
            [0.8, 0.1, 0.1],
            [0.3, 0.6, 0.1],
            [0.1, 0.8, 0.1],
            [0.1, 0.1, 0.8],
            [0.2, 0.2, 0.6],
            [0.5, 0.2, 0.3],
        ],
        columns=labels,
    )
    report = classification_report(y_true, probabilities, labels, majority_label="low")
    assert report["accuracy"] == pytest.approx(4 / 6)
    # high: P 1/2 R 1/2; medium: P 1/2 R 1; low: P 1 R 2/3
    f1 = [0.5, 2 * 0.5 * 1 / 1.5, 2 * 1 * (2 / 3) / (1 + 2 / 3)]
    assert report["macro_f1"] == pytest.approx(np.mean(f1))
    assert report["per_class"]["medium"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(f1[1]),
        "support": 1,
    }
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert report["majority_accuracy"] == pytest.approx(0.5)
    assert report["majority_macro_f1"] == pytest.approx((2 * 0.5 * 1 / 1.5) / 3)
    metrics = flat_metrics(report, "test")
    assert metrics["test_recall_low"] == pytest.approx(2 / 3)
    assert quality_table({"urgency": report}).loc[0, "accuracy"] == 0.667


def test_probability_columns_may_come_in_any_order() -> None:
    probabilities = pd.DataFrame({"b": [0.9, 0.2], "a": [0.1, 0.8]})
    report = classification_report(["b", "a"], probabilities, ["a", "b"], majority_label="a")
    assert report["accuracy"] == 1.0

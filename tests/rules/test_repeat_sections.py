"""The rules file's optional `knowledge_base` and `clusters` sections (the service's self-service
answers and repeat-issue clusters): defaults, and clear errors naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from tests.rules_helpers import assert_load_error, make_rules
from urgency.knowledge import AUTO_REPLY_MARGIN


def test_both_sections_are_optional_and_their_defaults_are_the_measured_ones() -> None:
    rules = make_rules()
    assert rules.spec.knowledge_base is None and rules.spec.clusters is None
    rules = make_rules(knowledge_base={"folder": "kb"}, clusters={})
    kb, clusters = rules.spec.knowledge_base, rules.spec.clusters
    assert (kb.folder, kb.method, kb.k, kb.base_url) == ("kb", "hybrid", 3, "")
    assert kb.auto_reply_margin == AUTO_REPLY_MARGIN
    assert (clusters.window_days, clusters.threshold, clusters.burst) == (7.0, 0.6, 120)
    assert (clusters.min_count, clusters.alpha, clusters.surge) == (5, 1e-4, False)


def test_durations_read_as_elsewhere() -> None:
    assert make_rules(clusters={"burst": "1h30m"}).spec.clusters.burst == 90


def _set(section: str, value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        data[section] = value

    return change


@pytest.mark.parametrize(
    ("section", "value", "expected"),
    [
        ("knowledge_base", {}, ["knowledge_base.folder: Field required"]),
        ("knowledge_base", {"folder": "kb", "methd": "bm25"}, ["knowledge_base.methd: unknown key"]),
        ("knowledge_base", {"folder": "kb", "method": "tfidf"}, ["knowledge_base.method", "'bm25'"]),
        ("knowledge_base", {"folder": "kb", "k": 0}, ["knowledge_base.k", "greater than or equal to 1"]),
        ("knowledge_base", {"folder": "kb", "auto_reply_margin": -1}, ["knowledge_base.auto_reply_margin"]),
        ("clusters", {"threshold": 1.5}, ["clusters.threshold", "less than or equal to 1"]),
        ("clusters", {"burst": "10d"}, ["clusters.burst", "'10d' is not a duration"]),
        ("clusters", {"window_days": 1, "burst": "30h"}, ["clusters:", "shorter than window_days"]),
        ("clusters", {"alpha": 0}, ["clusters.alpha"]),
        ("clusters", {"surge": "sometimes"}, ["clusters.surge"]),
        ("clusters", "yes", ["clusters:"]),
    ],
)
def test_a_wrong_value_names_its_key(section: str, value: Any, expected: list[str]) -> None:
    assert_load_error(_set(section, value), expected)

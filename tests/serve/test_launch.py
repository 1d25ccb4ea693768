"""`serve.launch`: the default number of worker processes and each one's share of the cores."""

from __future__ import annotations

import pytest

from serve import launch


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 1), (3, 1), (8, 4)])
def test_one_worker_per_two_cores_by_default(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int
) -> None:
    monkeypatch.setattr(launch, "default_jobs", lambda: cores)
    assert launch.default_workers() == workers

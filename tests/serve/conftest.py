"""Fixtures of the service tests: a store per test and a client of an app over it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serve.app import create_app
from tests.serve_helpers import settings


@pytest.fixture
def database(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'service.db'}"


@pytest.fixture
def client(service_params: Path, database: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings(service_params, database))) as test_client:
        yield test_client


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store in turn: what one accepts, the other must accept too."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    return request.getfixturevalue("postgres").create_database(f"serve_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def any_client(service_params: Path, any_database: str) -> Iterator[TestClient]:
    with TestClient(create_app(settings(service_params, any_database))) as test_client:
        yield test_client

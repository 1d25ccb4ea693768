"""API keys of the prediction service: the scopes a key may carry, how a key is stored (its
SHA-256 digest) and how a new one is made. Here, not in `serve`, so `urgency api-key` makes keys
without importing the service."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from typing import Any

SCOPES = ("score", "feedback", "admin")


def hash_key(key: str) -> str:
    """API keys are stored as SHA-256 hex digests: random keys need no slow password hash,
    and a leaked settings file does not leak the keys."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(name: str, scopes: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """A new random key and its entry for URGENCY_API_KEYS (the digest, never the key)."""
    if not name.strip():
        raise ValueError("give the key a name (--name): the service refuses an empty one")
    unknown = [scope for scope in scopes if scope not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {unknown}; choose from {list(SCOPES)}")
    key = secrets.token_urlsafe(32)
    # dict.fromkeys: a scope given twice is listed once, in the order given.
    return key, {"name": name, "sha256": hash_key(key), "scopes": list(dict.fromkeys(scopes))}

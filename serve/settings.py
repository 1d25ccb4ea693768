"""Service settings, from environment variables `URGENCY_*` (or a `.env` file).

Local mode (the default) needs no configuration: a well-known development API key with every
scope, and a SQLite store next to the params file. Any other mode refuses to start with that key
or with no key at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from urgency.keys import SCOPES, hash_key
from urgency.store import database_url as resolve_database_url

LOCAL_DEV_KEY = "local-dev-key"
# Seconds between checks of the registry alias when URGENCY_MODEL_CHECK_SECONDS is not set: with
# several workers, each follows a promotion by itself within this bound.
DEFAULT_MODEL_CHECK_SECONDS = 10.0


class ApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[Literal["score", "feedback", "admin"], ...] = Field(min_length=1)


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="URGENCY_", env_file=".env", extra="ignore", frozen=True)

    # `local`: the development key works and is the default; anything else needs real keys.
    mode: Literal["local", "production"] = "local"
    params: Path = Path("params.yaml")
    # Models: a folder with one MLflow model per head (DIR/<head>), else the registry alias.
    model_dir: Path | None = None
    model_alias: str | None = None  # default: mlflow.champion_alias in the params
    # Seconds between checks of the registry alias (unset: DEFAULT_MODEL_CHECK_SECONDS; 0: only
    # POST /v1/admin/reload switches, and only the worker that receives it). See `check_seconds`.
    model_check_seconds: float | None = Field(default=None, ge=0)
    # Default: SQLite at data/service.db next to the params file.
    database_url: str | None = None
    # JSON list of {"name", "sha256", "scopes"}; `urgency api-key` makes one.
    api_keys: tuple[ApiKey, ...] = ()
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    # Seconds a client has to send the whole request body (then 408).
    body_timeout_seconds: float = Field(default=15.0, gt=0)
    max_batch: int = Field(default=100, gt=0)
    # Helpdesk webhooks: JSON {"zendesk": "<signing secret>", "zammad": ..., "jira": ...,
    # "freshdesk": ...}. A helpdesk without a secret has no webhook (404).
    webhook_secrets: dict[Literal["zendesk", "freshdesk", "zammad", "jira"], SecretStr] = {}
    # Write-back: JSON {"zendesk": "agent@acme.example/token:API_TOKEN", "freshdesk": "API_KEY",
    # "zammad": "TOKEN", "jira": "bot@acme.example:API_TOKEN"}, with params helpdesks.<name>.api_url.
    helpdesk_credentials: dict[Literal["zendesk", "freshdesk", "zammad", "jira"], SecretStr] = {}
    # Seconds between two looks at the outbox of write-backs (0: this process sends none).
    outbox_seconds: float = Field(default=1.0, ge=0)
    # Cluster alerts (docs/repeat-issues.md): each new alert episode POSTed as JSON to this URL
    # through the outbox (retried with back-off), signed with HMAC-SHA256 when a secret is set
    # (`urgency.writeback.send_alert_webhook`). None: no such webhook.
    alert_webhook_url: str | None = Field(default=None, pattern=r"^https?://")
    alert_webhook_secret: SecretStr | None = None

    @field_validator("api_keys")
    @classmethod
    def _unique_names(cls, keys: tuple[ApiKey, ...]) -> tuple[ApiKey, ...]:
        names = [key.name for key in keys]
        if len(names) != len(set(names)):
            raise ValueError("api key names must be unique")
        return keys

    def check_seconds(self) -> float:
        """How often each worker checks the registry alias (0: never; a model folder has no alias)."""
        if self.model_dir is not None:
            return 0.0
        return DEFAULT_MODEL_CHECK_SECONDS if self.model_check_seconds is None else self.model_check_seconds

    def store_url(self) -> str:
        return resolve_database_url(self.database_url, self.params)

    def effective_keys(self) -> tuple[ApiKey, ...]:
        if self.api_keys or self.mode != "local":
            return self.api_keys
        return (ApiKey(name="local-dev", sha256=hash_key(LOCAL_DEV_KEY), scopes=SCOPES),)

    def problems(self) -> list[str]:
        """Why the service must not start with these settings (empty: it may)."""
        if self.mode == "local":
            return []
        if not self.api_keys:
            return [f"mode {self.mode!r} needs URGENCY_API_KEYS (the local development key is refused)"]
        default = hash_key(LOCAL_DEV_KEY)
        empty = hash_key("")
        return [
            f"api key {key.name!r} is the {'empty' if key.sha256 == empty else 'local development'} key"
            for key in self.api_keys
            if key.sha256 in (default, empty)
        ]

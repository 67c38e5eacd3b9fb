"""The API's settings: FERRY_* environment variables (or a .env file), validated once at start."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Secrets that appear in docs and examples: never acceptable outside the demo.
KNOWN_DEFAULT_SECRETS = frozenset({"", "changeme", "change-me", "secret", "ferry", "dev", "test"})


class InsecureSettings(ValueError):
    """The settings would run the service with a guessable secret."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FERRY_", env_file=".env", extra="ignore")

    database_url: str = ""  # empty: embedded SQLite under data_dir
    broker_url: str = "memory://"
    data_dir: Path = Path(".ferry")
    host: str = "127.0.0.1"
    port: int = 8000
    secret_key: SecretStr | None = None
    demo: bool = False
    demo_password: SecretStr | None = None
    token_minutes: int = 8 * 60
    allow_file_urls: bool = False  # file:// sources: demo and tests only
    migrate_on_start: bool = True
    log_level: str = "INFO"
    heartbeat_timeout_seconds: float = 15.0
    sync_timeout_seconds: float = 300.0  # a host silent this long after its sync request failed
    tag_deadline_seconds: float = 600.0  # a publisher silent this long after a tag request failed
    # Webhook receivers on inside addresses (loopback, private, link-local...) are refused
    # unless named here: host names or CIDRs, comma-separated (a local relay, a test receiver).
    webhook_allow_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    # Addresses/CIDRs of the TLS-terminating proxies whose X-Forwarded-Proto/-For are believed.
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    login_failures_per_user: int = Field(default=5, ge=1)  # then 429 until the window passes
    login_failures_per_address: int = Field(default=20, ge=1)
    login_window_seconds: float = Field(default=15 * 60.0, gt=0)
    # The API signs every command it relays (Ed25519, PEM); agents trust its .pub. Required
    # outside the demo: `ferry-api signing-key generate PATH` makes one.
    signing_key_file: Path | None = None
    command_ttl_seconds: float = Field(default=900.0, gt=0)  # a signed command expires after
    # Where signed checkpoints of the log's head go, outside the database (ferry_events.anchors):
    # a directory on storage the database's owner cannot write, or git:/path/to/repo. Unset: off.
    anchor_sink: str | None = None
    anchor_interval_seconds: float = Field(default=60.0, gt=0)  # and at every release
    # Broker users are <prefix>api, <prefix>staging, <prefix>publisher, <prefix>host-<host>;
    # a report is taken only from the user of the agent it speaks for (topology.BrokerUsers).
    broker_user_prefix: str = "ferry-"
    # Development only: every agent logs in as this one broker user, so any report from it is
    # taken (and attributed to it). Unset: strict, one user per agent.
    shared_broker_user: str | None = None

    @field_validator("webhook_allow_hosts", "trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """`a, b` -> ("a", "b"): a list is one comma-separated string in the environment."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the bad entry
        return value

    def store_url(self) -> str:
        return self.database_url or f"sqlite://{(self.data_dir / 'ferry.db').resolve()}"

    def checked(self) -> Settings:
        """Refuse a missing or well-known secret key, except in the embedded demo."""
        secret = self.secret_key.get_secret_value() if self.secret_key else ""
        if not self.demo and (secret.lower() in KNOWN_DEFAULT_SECRETS or len(secret) < 32):
            raise InsecureSettings(
                "FERRY_SECRET_KEY must be set to a random value of at least 32 characters "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        if not self.demo and self.signing_key_file is None:
            raise InsecureSettings(
                "FERRY_SIGNING_KEY_FILE must name the API's command signing key "
                "(make one with `ferry-api signing-key generate PATH`)"
            )
        return self

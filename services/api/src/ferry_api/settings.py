"""The API's settings: FERRY_* environment variables (or a .env file), validated once at start."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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
        return self

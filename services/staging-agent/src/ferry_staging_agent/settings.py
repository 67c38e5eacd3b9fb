"""The staging agent's settings, read from FERRY_* environment variables."""

from __future__ import annotations

from pathlib import Path

from ferry_events.trusted_keys import TrustedKeyPaths
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FERRY_", env_file=".env", extra="ignore")

    broker_url: str = "memory://"
    data_dir: Path = Path("./.ferry")
    # Where the publisher's bare release repos live: a local path or an ssh URL base.
    release_repo_base: str = ""
    allow_file_urls: bool = False
    command_timeout: float = 900.0
    keep_trees: int = 3
    # Prometheus /metrics on metrics_address:metrics_port; 0 leaves it off.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_address: str = "127.0.0.1"
    # The API's public keys (.pub files or folders of them, comma-separated): a command is
    # obeyed only when one of them signed it. Required to serve (ferry_events.command_trust).
    trusted_keys: TrustedKeyPaths = Field(default_factory=list)

    @model_validator(mode="after")
    def _default_release_repo_base(self) -> Settings:
        if not self.release_repo_base:
            self.release_repo_base = str(self.data_dir / "publisher" / "repos")
        return self

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"

"""The publisher's settings, read from FERRY_* environment variables."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from ferry_events.trusted_keys import TrustedKeyPaths
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# rsyncd reads `auth users` as a comma/space separated list and the secrets file as `user:pw`.
_RSYNC_USER = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FERRY_", env_file=".env", extra="ignore")

    broker_url: str = "memory://"
    data_dir: Path = Path("./.ferry")
    # Release repos at <publisher_dir>/repos/<app>.git (the staging agent pushes there),
    # exports at <publisher_dir>/exports/<app>/<N>/.
    publisher_dir: Path | None = None
    rsync_address: str = "127.0.0.1"
    rsync_port: int = 8730
    rsync_user: str = "ferry"
    rsync_password: SecretStr | None = None
    # More rsync logins (say one per group of hosts), as JSON: {"user": "password", ...}.
    rsync_more_users: dict[str, SecretStr] = Field(default_factory=dict)
    rsync_hosts_allow: str = "127.0.0.1"
    demo: bool = False
    command_timeout: float = 900.0
    # Exports kept per app (the newest; older ones are pruned after a release, their tags stay
    # and a host asking for one has it rebuilt from its tag).
    publisher_keep_exports: int = Field(default=10, ge=1)
    # Prometheus /metrics on metrics_address:metrics_port; 0 leaves it off.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_address: str = "127.0.0.1"
    # The API's public keys (.pub files or folders of them, comma-separated): a command is
    # obeyed only when one of them signed it. Required to serve (ferry_events.command_trust).
    trusted_keys: TrustedKeyPaths = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> Settings:
        if self.publisher_dir is None:
            self.publisher_dir = self.data_dir / "publisher"
        if self.rsync_password is None and self.demo:
            self.rsync_password = SecretStr(secrets.token_urlsafe(24))
        password = self.rsync_password.get_secret_value() if self.rsync_password else ""
        if not password:
            raise ValueError("FERRY_RSYNC_PASSWORD is required (only the demo makes one up)")
        if any(c.isspace() for c in password) or any(c.isspace() for c in self.rsync_user):
            raise ValueError("the rsync user and password may not contain whitespace")
        for user, secret in self.rsync_more_users.items():
            if not re.fullmatch(_RSYNC_USER, user) or not secret.get_secret_value():
                raise ValueError(f"rsync user {user!r}: a name of [A-Za-z0-9._-] and a password")
            if any(c.isspace() for c in secret.get_secret_value()):
                raise ValueError(f"the password of rsync user {user!r} contains whitespace")
        return self

    def rsync_logins(self) -> dict[str, str]:
        """Every rsync user the daemon accepts, with its password."""
        assert self.rsync_password is not None
        more = {user: secret.get_secret_value() for user, secret in self.rsync_more_users.items()}
        return {self.rsync_user: self.rsync_password.get_secret_value(), **more}

    @property
    def home(self) -> Path:
        assert self.publisher_dir is not None
        return self.publisher_dir

    @property
    def repos_dir(self) -> Path:
        return self.home / "repos"

    @property
    def exports_dir(self) -> Path:
        return self.home / "exports"

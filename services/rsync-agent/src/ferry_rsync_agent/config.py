"""The agent's local configuration: a TOML file named by FERRY_AGENT_CONFIG, validated here.

Everything the agent may do comes from this file; nothing that arrives over the bus can add an
app, a target directory or a command.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from ferry_events.validation import AppName, HostName
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

CONFIG_ENV = "FERRY_AGENT_CONFIG"
BROKER_ENV = "FERRY_BROKER_URL"  # overrides broker_url, so its credentials can live elsewhere
METRICS_ENV = {"FERRY_METRICS_PORT": "metrics_port", "FERRY_METRICS_ADDRESS": "metrics_address"}


def check_absolute(path: Path) -> Path:
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    return path


def check_rsync_source(url: str) -> str:
    """`rsync://user@host[:port]/`: nothing rsync could read as an option or a shell transport."""
    parts = urlsplit(url)
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError("may not contain whitespace or control characters")
    if parts.scheme != "rsync" or not parts.hostname or parts.hostname.startswith("-"):
        raise ValueError("must be rsync://[user@]host[:port]/")
    if (parts.username or "").startswith("-") or not url.endswith("/"):
        raise ValueError("must end with '/' and its user may not start with '-'")
    return url


AbsolutePath = Annotated[Path, AfterValidator(check_absolute)]


class PostSyncHook(BaseModel):
    """A local command run in the new release's directory once `current` points to it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    argv: list[str] = Field(min_length=1)
    timeout_seconds: float = Field(default=60.0, gt=0)


class AppConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    target: AbsolutePath
    keep: int = Field(default=5, ge=1)  # current and the previous release are kept regardless
    post_sync: PostSyncHook | None = None


class AgentConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: HostName
    broker_url: str = "memory://"
    rsync_source: Annotated[str, AfterValidator(check_rsync_source)]
    password_file: AbsolutePath | None = None
    rsync_timeout_seconds: int = Field(default=300, gt=0)
    bwlimit_kib: int | None = Field(default=None, gt=0)  # spare the production network
    state_dir: AbsolutePath = Path("/var/lib/ferry-rsync-agent")
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    # Pruning and the next sync's spare wait until no command came for this long.
    housekeeping_idle_seconds: float = Field(default=5.0, ge=0)
    # Prometheus /metrics on metrics_address:metrics_port; 0 leaves it off.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_address: str = "127.0.0.1"
    # The API's public keys (.pub files or folders of them): a command is obeyed only when one
    # of them signed it; the agent does not start without one.
    trusted_keys: list[AbsolutePath] = Field(default_factory=list)
    apps: dict[AppName, AppConfig] = Field(default_factory=dict)

    def module_url(self, app: str) -> str:
        """The publisher's rsync module of an app: `<app>/`."""
        return f"{self.rsync_source}{app}/"

    def release_url(self, app: str, version: int) -> str:
        """Release N's tree: `<app>/<N>/`."""
        return f"{self.module_url(app)}{version}/"

    def manifest_url(self, app: str, version: int) -> str:
        """Release N's manifest, beside its tree: `<app>/<N>.manifest`."""
        return f"{self.module_url(app)}{version}.manifest"


def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] = os.environ
) -> AgentConfig:
    """Read the TOML file (FERRY_AGENT_CONFIG unless a path is given); FERRY_BROKER_URL and
    FERRY_METRICS_PORT/ADDRESS win."""
    source = path or environ.get(CONFIG_ENV)
    if not source:
        raise SystemExit(f"set {CONFIG_ENV} to the agent's TOML configuration file")
    with Path(source).open("rb") as f:
        data = tomllib.load(f)
    if broker_url := environ.get(BROKER_ENV):
        data["broker_url"] = broker_url
    for env, key in METRICS_ENV.items():
        if env in environ:
            data[key] = environ[env]
    return AgentConfig.model_validate(data)

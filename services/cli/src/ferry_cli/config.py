"""Where the API is and who we are: FERRY_URL / FERRY_TOKEN, else ~/.config/ferry/config.toml."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ferry" / "config.toml"


@dataclass(frozen=True)
class Config:
    url: str
    token: str | None


def load() -> Config:
    stored: dict[str, str] = {}
    path = config_path()
    if path.exists():
        stored = {k: str(v) for k, v in tomllib.loads(path.read_text()).items()}
    url = os.environ.get("FERRY_URL") or stored.get("url") or DEFAULT_URL
    token = os.environ.get("FERRY_TOKEN") or stored.get("token")
    return Config(url=url.rstrip("/"), token=token)


def save(url: str, token: str) -> Path:
    """Write the config readable by its owner only (it holds a bearer token)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # A JSON string is a valid TOML basic string for the characters a URL or token holds.
    text = f"url = {json.dumps(url)}\ntoken = {json.dumps(token)}\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # also when the file existed with a wider mode
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    return path

"""The agents' trusted-keys setting, FERRY_TRUSTED_KEYS: the API's public keys as .pub files or
directories of them, comma-separated. Apart from command_trust.py so that an agent configured
without pydantic-settings (the rsync agent's TOML) never loads it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

__all__ = ["TrustedKeyPaths"]


def _split_paths(value: Any) -> Any:
    """`/etc/ferry/api.pub,/etc/ferry/next.pub` -> two paths; a list stays a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


TrustedKeyPaths = Annotated[list[Path], NoDecode, BeforeValidator(_split_paths)]
"""An agent setting: the API's public keys, as .pub files or directories of them."""

"""Password hashes (argon2), API-token digests (sha256) and the ids of sessions ended by logging
out, kept as documents beside the read models but outside every projection: they never enter the
event log, no rebuild drops them, and every API process sees a change at once.

They are committed under checkpoints that never move (expected 0, position 0), so any number of
writers may commit them and `reset()` of a projection never touches them.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

if TYPE_CHECKING:
    from ferry_events.store import ReadModels

PASSWORDS = "credentials"  # collection and checkpoint name, key = username
# A collection (under checkpoint PASSWORDS), key = sha256 of the token.
TOKEN_DIGESTS = "api_tokens"  # noqa: S105 - a name, not a secret
TOKEN_PREFIX = "ferry_"  # noqa: S105 - marks API tokens apart from sessions
# A collection (under checkpoint PASSWORDS), key = a session token's `sid`, kept until it expires.
ENDED_SESSIONS = "ended_sessions"
PRUNE_BATCH = 50  # expired session ids dropped per logout: the collection never grows unbounded

_hasher = PasswordHasher()
# Verified against when the user is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def _write(models: ReadModels, collection: str, key: str, doc: dict[str, Any] | None) -> None:
    await models.commit(PASSWORDS, expected=0, position=0, changes={(collection, key): doc})


async def set_password(models: ReadModels, username: str, password: str) -> None:
    hashed = await asyncio.to_thread(_hasher.hash, password)
    await _write(models, PASSWORDS, username, {"hash": hashed, "changed_at": _now()})


async def password_matches(models: ReadModels, username: str, password: str) -> bool:
    """True if the password is the user's; one argon2 verify whether the user exists or not."""
    doc = await models.get(PASSWORDS, username)
    hashed = doc["hash"] if doc else _DUMMY_HASH
    try:
        await asyncio.to_thread(_hasher.verify, hashed, password)
    except (VerificationError, InvalidHashError):
        return False
    if doc and _hasher.check_needs_rehash(hashed):
        await set_password(models, username, password)
    return doc is not None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_token() -> str:
    """A random bearer token for scripts; only its digest is ever stored."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def save_token_digest(models: ReadModels, token: str, token_id: str, username: str) -> None:
    digest = token_digest(token)
    doc = {"digest": digest, "token_id": token_id, "username": username, "created_at": _now()}
    await _write(models, TOKEN_DIGESTS, digest, doc)


async def forget_token_digest(models: ReadModels, token_id: str) -> None:
    """Make a revoked token unknown at once, on every API process."""
    for doc in await models.find(TOKEN_DIGESTS, where={"token_id": token_id}):
        await _write(models, TOKEN_DIGESTS, doc["digest"], None)


async def token_owner(models: ReadModels, token: str) -> dict[str, Any] | None:
    """{token_id, username} of a presented API token, or None if no such token was issued."""
    return await models.get(TOKEN_DIGESTS, token_digest(token))


def new_session_id() -> str:
    return secrets.token_urlsafe(16)


async def end_session(models: ReadModels, session_id: str, username: str, expires: float) -> None:
    """Refuse the session from now on (until it would have expired anyway), on every process."""
    now = time.time()
    changes: dict[tuple[str, str], dict[str, Any] | None] = {
        (ENDED_SESSIONS, doc["sid"]): None
        for doc in await models.find(ENDED_SESSIONS, order_by="expires", limit=PRUNE_BATCH)
        if doc["expires"] < now
    }
    changes[(ENDED_SESSIONS, session_id)] = {
        "sid": session_id,
        "username": username,
        "expires": expires,
    }
    await models.commit(PASSWORDS, expected=0, position=0, changes=changes)


async def session_ended(models: ReadModels, session_id: str) -> bool:
    return await models.get(ENDED_SESSIONS, session_id) is not None

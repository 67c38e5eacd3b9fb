"""Accounts: the commands that create and change users and their API tokens, shared by the
routes, the `create-admin` command and the demo. Every change is an event on `user-<name>`;
secrets go to credentials.py only after their event is in the log, so nothing works unaudited.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import structlog
from ferry_events.registry import Event
from ferry_events.schemas import (
    Role,
    TokenCreated,
    TokenRevoked,
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserPasswordChanged,
    UserRoleChanged,
)

from ferry_api.commands import credentials, login_attempts
from ferry_api.domain import Actor
from ferry_api.domain.errors import Conflict, Forbidden, Invalid, NotFound
from ferry_api.domain.streams import user_stream
from ferry_api.readmodels.users import TOKENS, USERS
from ferry_api.runtime import Runtime

log = structlog.get_logger()


async def create_user(
    runtime: Runtime, username: str, role: Role, password: str, *, by: str, wait: bool = True
) -> None:
    stream = user_stream(username)
    if await runtime.store.stream_version(stream) > 0:
        raise Conflict(f"user '{username}' already exists")
    created = UserCreated(username=username, role=role, by=by)
    await runtime.append(stream, [created], 0, actor=by, wait=wait)
    await credentials.set_password(runtime.store, username, password)
    log.info("user.created", username=username, role=role, by=by)


@dataclass(frozen=True)
class UserChange:
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = None


async def change_user(
    runtime: Runtime, username: str, change: UserChange, *, by: str, wait: bool = True
) -> None:
    """Append what actually changes, all at once; refuse to lock out the last admin."""
    stream = user_stream(username)
    version = await runtime.store.stream_version(stream)
    user = await runtime.store.get(USERS, username)
    if version == 0 or user is None:
        raise NotFound(f"no user '{username}'")
    events = _user_events(user, change, by)
    if not events:
        return
    await _keep_an_admin(runtime, user, change)
    await runtime.append(stream, events, version, actor=by, wait=wait)
    if change.password is not None:
        await credentials.set_password(runtime.store, username, change.password)
    log.info("user.changed", username=username, changes=[e.type_name for e in events], by=by)


async def check_current_password(
    runtime: Runtime, username: str, current: str | None, *, address: str
) -> None:
    """Changing one's own password needs the current one; a wrong one counts as a failed login
    (throttled alike), so an open session cannot be used to guess it."""
    if current is None:
        raise Invalid("current_password: needed to change your own password")
    await login_attempts.check(runtime, username, address)
    if not await credentials.password_matches(runtime.store, username, current):
        await login_attempts.failed(runtime, username, address)
        raise Forbidden("the current password is wrong; the password was not changed")
    await login_attempts.succeeded(runtime, username)


def _user_events(user: dict[str, Any], change: UserChange, by: str) -> list[Event]:
    name = user["username"]
    events: list[Event] = []
    if change.role is not None and change.role != user["role"]:
        events.append(UserRoleChanged(username=name, role=change.role, by=by))
    if change.disabled is True and not user["disabled"]:
        events.append(UserDisabled(username=name, by=by))
    if change.disabled is False and user["disabled"]:
        events.append(UserEnabled(username=name, by=by))
    if change.password is not None:
        events.append(UserPasswordChanged(username=name, by=by))
    return events


async def _keep_an_admin(runtime: Runtime, user: dict[str, Any], change: UserChange) -> None:
    if user["role"] != "admin" or user["disabled"]:
        return
    if change.disabled is True or change.role not in (None, "admin"):
        active = await runtime.store.count(USERS, {"role": "admin", "disabled": False})
        if active <= 1:
            raise Conflict("this is the last active admin: make another admin first")


async def create_token(runtime: Runtime, owner: Actor, name: str) -> tuple[str, str]:
    """A new API token for `owner`: (token id, the token itself, shown this once)."""
    token_id, token = secrets.token_hex(8), credentials.new_api_token()
    created = TokenCreated(token_id=token_id, username=owner.username, name=name, by=owner.username)
    await runtime.append(user_stream(owner.username), [created], None, actor=owner.username)
    await credentials.save_token_digest(runtime.store, token, token_id, owner.username)
    log.info("token.created", username=owner.username, token_id=token_id)
    return token_id, token


async def revoke_token(runtime: Runtime, token_id: str, actor: Actor) -> None:
    """Revoke a token of one's own (an admin: anyone's); it stops working at once."""
    token = await runtime.store.get(TOKENS, token_id)
    if token is None or (token["username"] != actor.username and actor.role != "admin"):
        raise NotFound(f"no API token '{token_id}'")
    if not token["revoked"]:
        revoked = TokenRevoked(token_id=token_id, username=token["username"], by=actor.username)
        await runtime.append(user_stream(token["username"]), [revoked], None, actor=actor.username)
    await credentials.forget_token_digest(runtime.store, token_id)
    log.info("token.revoked", username=token["username"], token_id=token_id)

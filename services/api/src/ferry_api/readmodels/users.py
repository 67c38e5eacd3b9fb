"""Users and their API tokens, as the auth check reads them on every request.

`session_version` counts the events that void earlier sessions (password changed, disabled,
enabled): a session token carries the value it was issued under.
"""

from __future__ import annotations

from collections.abc import Sequence

from ferry_events.envelope import StoredEvent
from ferry_events.projection import DocumentBatch
from ferry_events.schemas import (
    TokenCreated,
    TokenRevoked,
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserPasswordChanged,
    UserRoleChanged,
)

USERS = "users"
TOKENS = "tokens"


class UsersProjection:
    name = "users"
    collections: Sequence[str] = (USERS, TOKENS)

    async def apply(self, docs: DocumentBatch, event: StoredEvent) -> None:
        payload = event.payload()
        at = event.recorded_at.isoformat()
        if isinstance(payload, UserCreated):
            docs.put(
                USERS,
                payload.username,
                {
                    "username": payload.username,
                    "role": payload.role,
                    "disabled": False,
                    "created_at": at,
                    "created_by": payload.by,
                    "updated_at": at,
                    "session_version": 0,
                },
            )
        elif isinstance(payload, UserRoleChanged):
            await _change_user(docs, payload.username, at, role=payload.role)
        elif isinstance(payload, UserDisabled):
            await _change_user(docs, payload.username, at, disabled=True, void_sessions=True)
        elif isinstance(payload, UserEnabled):
            await _change_user(docs, payload.username, at, disabled=False, void_sessions=True)
        elif isinstance(payload, UserPasswordChanged):
            await _change_user(docs, payload.username, at, void_sessions=True)
        elif isinstance(payload, TokenCreated):
            docs.put(
                TOKENS,
                payload.token_id,
                {
                    "id": payload.token_id,
                    "username": payload.username,
                    "name": payload.name,
                    "created_at": at,
                    "created_by": payload.by,
                    "revoked": False,
                    "revoked_at": None,
                    "revoked_by": None,
                },
            )
        elif isinstance(payload, TokenRevoked):
            token = await docs.get(TOKENS, payload.token_id)
            if token is not None:
                docs.put(
                    TOKENS,
                    payload.token_id,
                    {**token, "revoked": True, "revoked_at": at, "revoked_by": payload.by},
                )


async def _change_user(
    docs: DocumentBatch, username: str, at: str, *, void_sessions: bool = False, **fields: object
) -> None:
    user = await docs.get(USERS, username)
    if user is None:
        return
    changed = {**user, **fields, "updated_at": at}
    if void_sessions:
        changed["session_version"] = user["session_version"] + 1
    docs.put(USERS, username, changed)

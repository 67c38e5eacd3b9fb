"""Log in (throttled after failures), log out, who am I, and the caller's long-lived API tokens
for scripts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import structlog
from fastapi import APIRouter, Path, Query, Request, Response
from ferry_events.validation import UserName
from pydantic import BaseModel, ConfigDict, Field

from ferry_api.commands import accounts, credentials, login_attempts
from ferry_api.http.auth import (
    CurrentUser,
    PresentedToken,
    clear_session_cookies,
    client_address,
    end_session,
    issue_session,
    set_session_cookies,
)
from ferry_api.http.deps import RuntimeDep
from ferry_api.http.errors import Unauthorized
from ferry_api.http.routes.users import UserOut
from ferry_api.readmodels.users import TOKENS, USERS

log = structlog.get_logger()

router = APIRouter(prefix="/api/v1", tags=["auth"])


class Login(BaseModel):
    # No control characters: a failed login's name is recorded (and PostgreSQL refuses NUL).
    username: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    cookie: bool = Field(
        False,
        description="also set the session as an HttpOnly cookie, with "
        "a readable CSRF cookie to echo in X-CSRF-Token (the web UI)",
    )


class Session(BaseModel):
    token: str
    expires_at: datetime
    user: UserOut


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # No control characters: a name is shown in lists and logs (and PostgreSQL refuses NUL).
    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            pattern=r"^[^\x00-\x1f\x7f]+$",
            description="what the token is for",
        ),
    ]


class TokenOut(BaseModel):
    id: str
    username: str
    name: str
    created_at: datetime
    revoked: bool
    revoked_at: datetime | None = None
    revoked_by: str | None = None


class NewToken(TokenOut):
    token: str = Field(description="shown only this once; only its digest is kept")


@router.post(
    "/auth/login",
    responses={
        401: {"description": "wrong username or password"},
        429: {"description": "too many failed logins lately: see Retry-After"},
    },
)
async def login(body: Login, runtime: RuntimeDep, request: Request, response: Response) -> Session:
    """Trade a username and password for a session token (see `expires_at`)."""
    address = client_address(request)
    await login_attempts.check(runtime, body.username, address)  # before any password check
    matches = await credentials.password_matches(runtime.store, body.username, body.password)
    user = await runtime.store.get(USERS, body.username) if matches else None
    if user is None or user["disabled"]:
        await login_attempts.failed(runtime, body.username, address)
        raise Unauthorized("wrong username or password, or the account is disabled")
    await login_attempts.succeeded(runtime, body.username)
    token, expires = issue_session(runtime.settings, user)
    if body.cookie:
        set_session_cookies(response, request, runtime.settings, token, expires)
    return Session(token=token, expires_at=expires, user=UserOut.model_validate(user))


@router.delete("/auth/session", status_code=204, response_class=Response)
async def logout(
    _: CurrentUser, token: PresentedToken, runtime: RuntimeDep, request: Request
) -> Response:
    """End the session (bearer or cookie): its token is refused from now on, by every API
    process; the browser's cookies are cleared. The user's other sessions go on."""
    username = await end_session(runtime, token)
    log.info("session.ended", username=username)
    response = Response(status_code=204)
    clear_session_cookies(response, request)
    return response


@router.get("/me")
async def me(actor: CurrentUser, runtime: RuntimeDep) -> UserOut:
    return UserOut.model_validate(await runtime.store.get(USERS, actor.username))


@router.post("/tokens", status_code=201)
async def create_token(body: TokenIn, actor: CurrentUser, runtime: RuntimeDep) -> NewToken:
    """A new API token acting as you; send it as `Authorization: Bearer <token>`."""
    token_id, token = await accounts.create_token(runtime, actor, body.name)
    issued = await runtime.store.get(TOKENS, token_id)
    return NewToken.model_validate({**(issued or {}), "token": token})


@router.get("/tokens")
async def list_tokens(
    actor: CurrentUser,
    runtime: RuntimeDep,
    user: Annotated[UserName | None, Query(description="an admin may list another's")] = None,
) -> list[TokenOut]:
    """Your API tokens (never the tokens themselves), newest first."""
    owner = user if user and actor.role == "admin" else actor.username
    found = await runtime.store.find(
        TOKENS, {"username": owner}, order_by="created_at", descending=True, limit=1000
    )
    return [TokenOut.model_validate(token) for token in found]


@router.delete("/tokens/{token_id}", status_code=204, response_class=Response)
async def revoke_token(
    token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$")],
    actor: CurrentUser,
    runtime: RuntimeDep,
) -> None:
    """Revoke a token: it stops working at once."""
    await accounts.revoke_token(runtime, token_id, actor)

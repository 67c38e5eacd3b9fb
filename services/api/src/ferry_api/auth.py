"""Who is calling: session tokens (HS256 JWT, expiring) and API tokens (random, revocable),
both checked against the read models on every request, so a disabled user, a changed role or a
revoked token takes effect at once.

    CurrentUser                 Annotated[Actor, Depends(current_user)]: 401 without a valid token
    set_session_cookies(...)    the web UI's session: the token in an HttpOnly cookie, plus a
                                readable CSRF cookie that every change must echo in X-CSRF-Token
    require_role("lead", ...)   a dependency: 403 for other roles
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, Query, Request, Response
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from ferry_events.schemas import Role

from ferry_api import credentials
from ferry_api.deps import RuntimeDep
from ferry_api.errors import Forbidden, Unauthorized
from ferry_api.projections.users import TOKENS, USERS
from ferry_api.runtime import Runtime
from ferry_api.settings import Settings
from ferry_api.tickets import Actor

ALGORITHM = "HS256"
AUDIENCE = "ferry-api"
SESSION_COOKIE = "ferry_session"
CSRF_COOKIE = "ferry_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(
    auto_error=False,
    description="a session token from /api/v1/auth/login, or an API token from /api/v1/tokens",
)


_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="the web UI's session (POST /api/v1/auth/login with "
    '"cookie": true); changes also need the X-CSRF-Token header',
)


def _secret(settings: Settings) -> str:
    if settings.secret_key is None:
        raise Unauthorized("the server has no FERRY_SECRET_KEY: sessions are off")
    return settings.secret_key.get_secret_value()


def issue_session(settings: Settings, user: dict[str, Any]) -> tuple[str, datetime]:
    """A signed session token for the user, valid for settings.token_minutes."""
    now = datetime.now(UTC)
    expires = now + timedelta(minutes=settings.token_minutes)
    claims = {
        "sub": user["username"],
        "sv": user["session_version"],
        "iat": now,
        "exp": expires,
        "aud": AUDIENCE,
    }
    return jwt.encode(claims, _secret(settings), algorithm=ALGORITHM), expires


async def _session_user(runtime: Runtime, token: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(
            token,
            _secret(runtime.settings),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["sub", "exp", "sv"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("session expired: log in again") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("invalid token") from exc
    user = await _active_user(runtime, str(claims["sub"]))
    if claims["sv"] != user["session_version"]:
        raise Unauthorized("session ended by a password or account change: log in again")
    return user


async def _api_token_user(runtime: Runtime, token: str) -> dict[str, Any]:
    owner = await credentials.token_owner(runtime.store, token)
    issued = owner and await runtime.store.get(TOKENS, owner["token_id"])
    if not owner or not issued or issued["revoked"]:
        raise Unauthorized("invalid or revoked API token")
    return await _active_user(runtime, owner["username"])


async def _active_user(runtime: Runtime, username: str) -> dict[str, Any]:
    user = await runtime.store.get(USERS, username)
    if user is None or user["disabled"]:
        raise Unauthorized("account unknown or disabled")
    return user


async def authenticate(runtime: Runtime, token: str) -> Actor:
    if token.startswith(credentials.TOKEN_PREFIX):
        user = await _api_token_user(runtime, token)
    else:
        user = await _session_user(runtime, token)
    return Actor(username=user["username"], role=user["role"])


def csrf_token(settings: Settings, session_token: str) -> str:
    """Derived from the session token, so a CSRF cookie planted by someone else never fits."""
    key = _secret(settings).encode()
    return hmac.new(key, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def set_session_cookies(
    response: Response, request: Request, settings: Settings, token: str, expires: datetime
) -> None:
    """The session token in an HttpOnly cookie, its CSRF token in one the page can read."""
    max_age = max(0, int((expires - datetime.now(UTC)).total_seconds()))
    secure = request.url.scheme == "https"
    for name, value, http_only in (
        (SESSION_COOKIE, token, True),
        (CSRF_COOKIE, csrf_token(settings, token), False),
    ):
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=secure,
            httponly=http_only,
            samesite="strict",
        )


def clear_session_cookies(response: Response, request: Request) -> None:
    secure = request.url.scheme == "https"
    for name, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=http_only, samesite="strict")


def _check_csrf(request: Request, settings: Settings, session_token: str) -> None:
    if request.method in SAFE_METHODS:
        return
    # As bytes: compare_digest refuses str with non-ASCII, which a header may hold.
    sent = request.headers.get(CSRF_HEADER, "").encode()
    expected = csrf_token(settings, session_token).encode()
    if not (
        hmac.compare_digest(sent, request.cookies.get(CSRF_COOKIE, "").encode())
        and hmac.compare_digest(sent, expected)
    ):
        raise Forbidden(
            f"a change with the session cookie needs the {CSRF_HEADER} header "
            f"set to the {CSRF_COOKIE} cookie"
        )


async def current_user(
    request: Request,
    runtime: RuntimeDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Actor:
    """The bearer token's user, else the session cookie's (changes: with a matching CSRF)."""
    if bearer is not None and bearer.scheme.lower() == "bearer":
        return await authenticate(runtime, bearer.credentials)
    if not cookie:
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    actor = await authenticate(runtime, cookie)
    _check_csrf(request, runtime.settings, cookie)
    return actor


CurrentUser = Annotated[Actor, Depends(current_user)]


async def stream_user(
    runtime: RuntimeDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
    token: Annotated[
        str | None,
        Query(description="for EventSource, which cannot send headers: the bearer token"),
    ] = None,
) -> Actor:
    """Like current_user, also accepting ?token= (a browser's EventSource sends no headers)."""
    if bearer is not None and bearer.scheme.lower() == "bearer":
        return await authenticate(runtime, bearer.credentials)
    if token:
        return await authenticate(runtime, token)
    if cookie:
        return await authenticate(runtime, cookie)
    raise Unauthorized("send 'Authorization: Bearer <token>' or ?token=")


StreamUser = Annotated[Actor, Depends(stream_user)]


def require_role(*roles: Role) -> Callable[[Actor], Awaitable[Actor]]:
    """A dependency passing callers of the given roles through, 403 for the rest."""

    async def checked(actor: CurrentUser) -> Actor:
        if actor.role not in roles:
            raise Forbidden(f"needs the role {' or '.join(roles)}; you are {actor.role}")
        return actor

    return checked


Admin = Annotated[Actor, Depends(require_role("admin"))]

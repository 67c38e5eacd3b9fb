"""Who is calling: session tokens (HS256 JWT, expiring, ended by logging out) and API tokens
(random, revocable), both checked against the read models on every request, so a disabled user,
a changed role, a revoked token or a logout takes effect at once on every API process.

    CurrentUser                 Annotated[Actor, Depends(current_user)]: 401 without a valid token
    PresentedToken              the token that request authenticated with (logout ends it)
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

from ferry_api.commands import credentials, login_attempts
from ferry_api.domain import Actor
from ferry_api.domain.errors import Forbidden, Invalid
from ferry_api.http.deps import RuntimeDep
from ferry_api.http.errors import Unauthorized
from ferry_api.readmodels.users import TOKENS, USERS
from ferry_api.runtime import Runtime
from ferry_api.settings import Settings

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
        "sid": credentials.new_session_id(),
        "iat": now,
        "exp": expires,
        "aud": AUDIENCE,
    }
    return jwt.encode(claims, _secret(settings), algorithm=ALGORITHM), expires


def _session_claims(settings: Settings, token: str) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _secret(settings),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            # `sid` is what a logout ends: a token without one could never be ended.
            options={"require": ["sub", "exp", "sv", "sid"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("session expired: log in again") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("invalid token") from exc
    return claims


async def _session_user(runtime: Runtime, token: str) -> dict[str, Any]:
    claims = _session_claims(runtime.settings, token)
    if await credentials.session_ended(runtime.store, str(claims["sid"])):
        raise Unauthorized("this session was logged out: log in again")
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


async def end_session(runtime: Runtime, token: str) -> str:
    """Log out: every API process refuses the session token from now on. Its user's name."""
    if token.startswith(credentials.TOKEN_PREFIX):
        raise Invalid("an API token is not a session: revoke it with DELETE /api/v1/tokens/{id}")
    claims = _session_claims(runtime.settings, token)
    username = str(claims["sub"])
    await credentials.end_session(runtime.store, str(claims["sid"]), username, claims["exp"])
    return username


def client_address(request: Request) -> str:
    """The client's address as the login throttle counts it: behind a trusted proxy, the
    proxy's client (ProxyHeadersMiddleware in asgi.py set it)."""
    return login_attempts.address_key(request.client.host if request.client else None)


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


def _bearer_token(bearer: HTTPAuthorizationCredentials | None) -> str | None:
    return bearer.credentials if bearer is not None and bearer.scheme.lower() == "bearer" else None


def presented_token(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> str:
    """The bearer token, else the session cookie: what current_user authenticates."""
    token = _bearer_token(bearer) or cookie
    if not token:
        raise Unauthorized("send 'Authorization: Bearer <token>'")
    return token


PresentedToken = Annotated[str, Depends(presented_token)]


async def current_user(
    request: Request,
    runtime: RuntimeDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: PresentedToken,
) -> Actor:
    """The bearer token's user, else the session cookie's (changes: with a matching CSRF)."""
    actor = await authenticate(runtime, token)
    if _bearer_token(bearer) is None:  # the cookie: a browser sends it to any request
        _check_csrf(request, runtime.settings, token)
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
    presented = _bearer_token(bearer) or token or cookie
    if presented:
        return await authenticate(runtime, presented)
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

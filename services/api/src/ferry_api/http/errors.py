"""The one place that maps errors to status codes. Every error leaves the API as
{"error": code, "message": text}; bad input is never a 500.

    domain Refused              Invalid 422, NotFound 404, Conflict 409, Forbidden 403
                                (the tickets' TicketInvalid, TicketConflict, TicketForbidden too)
    Unauthorized                401: no token, or a bad one (http's own: auth.py raises it)
    Throttled                   429 with Retry-After: too many failed logins lately
    WrongExpectedVersion        409: somebody else changed it first
    RequestValidationError      422 naming the field
    HTTPException               its own status (404 of an unknown path, 405, ...)
"""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ferry_events.store import WrongExpectedVersion
from starlette.exceptions import HTTPException as StarletteHTTPException

from ferry_api.commands.login_attempts import Throttled
from ferry_api.domain.errors import Conflict, Forbidden, Invalid, NotFound, Refused
from ferry_api.http.headers import SECURITY_HEADERS

log = structlog.get_logger()


class Unauthorized(Refused):
    """The caller is not known: no token, an expired or revoked one, a wrong password."""


STATUS: dict[type[Refused], tuple[int, str]] = {
    Invalid: (422, "invalid"),
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
    Forbidden: (403, "forbidden"),
    Unauthorized: (401, "unauthorized"),
    Throttled: (429, "too_many_requests"),
}
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid",
    429: "too_many_requests",
}


def status_of(error: Refused) -> tuple[int, str]:
    """(status, code) of a refusal: its nearest class in STATUS, else 400."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400, "bad_request"


def error_body(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    headers = {**(headers or {}), **({"WWW-Authenticate": "Bearer"} if status == 401 else {})}
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def _field(loc: tuple[object, ...]) -> str:
    return ".".join(str(part) for part in loc if part not in ("body", "query", "path"))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        retry = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Throttled) else None
        return error_body(*status_of(exc), exc.message, retry)

    @app.exception_handler(WrongExpectedVersion)
    async def conflict(_: Request, exc: WrongExpectedVersion) -> JSONResponse:
        return error_body(409, "conflict", "changed by another request meanwhile; reload and retry")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{_field(e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()]
        return error_body(422, "invalid", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        return error_body(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request.failed", path=request.url.path)
        # Answered outside the middlewares (Starlette's ServerErrorMiddleware): headers here.
        return error_body(
            500, "internal", "internal error; the log has the details", SECURITY_HEADERS
        )

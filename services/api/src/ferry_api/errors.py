"""Every error leaves the API as {"error": code, "message": text}; bad input is never a 500.

ApiError(status, code, message)   raised by routes and services
  NotFound 404, Forbidden 403, Conflict 409, Unauthorized 401, Invalid 422
RequestValidationError            -> 422 naming the field
WrongExpectedVersion              -> 409 (somebody else changed it first)
tickets.TicketError               -> its own status: TicketConflict 409, TicketForbidden 403,
                                     TicketInvalid 422
"""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ferry_events.store import WrongExpectedVersion
from starlette.exceptions import HTTPException as StarletteHTTPException

from ferry_api.tickets import TicketError

log = structlog.get_logger()

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


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class NotFound(ApiError):
    status, code = 404, "not_found"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class Conflict(ApiError):
    status, code = 409, "conflict"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Invalid(ApiError):
    """Input that passed the schema but not a check that needs the settings or the store."""

    status, code = 422, "invalid"


def error_body(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def _field(loc: tuple[object, ...]) -> str:
    return ".".join(str(part) for part in loc if part not in ("body", "query", "path"))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_body(exc.status, exc.code, exc.message)

    @app.exception_handler(TicketError)
    async def ticket_refused(_: Request, exc: TicketError) -> JSONResponse:
        return error_body(exc.status, exc.code, exc.message)

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
        log.exception("unhandled error", path=request.url.path)
        return error_body(500, "internal", "internal error; the log has the details")

"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial

from fastapi import APIRouter, Response

from ferry_api.http.auth import CurrentUser
from ferry_api.http.deps import RuntimeDep
from ferry_api.http.errors import error_body
from ferry_api.http.schemas import Status
from ferry_api.metrics import CONTENT_TYPE
from ferry_api.workers.heartbeats import declare_heartbeat_queue

router = APIRouter(tags=["health"])

PROBE_SECONDS = 3.0


@router.get("/healthz")
async def healthz() -> Status:
    """The process is up."""
    return Status(status="ok")


@router.get(
    "/readyz",
    response_model=None,  # a 503 is an error body (a JSONResponse): the 200 body is Status
    responses={
        200: {"model": Status},
        503: {"description": "the event store or the bus does not answer"},
    },
)
async def readyz(runtime: RuntimeDep) -> object:
    """The store and the bus answer."""
    checks: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("event store", runtime.store.last_position),
        ("bus", partial(declare_heartbeat_queue, runtime)),  # idempotent: a broker round trip
    ]
    for name, check in checks:
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                await check()
        except Exception as exc:
            return error_body(503, "unavailable", f"{name} unreachable: {type(exc).__name__}")
    return {"status": "ready"}


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
            "description": "Prometheus text",
        }
    },
)
async def metrics(_: CurrentUser, runtime: RuntimeDep) -> Response:
    """Prometheus metrics (scrape with an API token as bearer)."""
    await runtime.metrics.refresh(runtime.store, runtime.projector, runtime.ingest)
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)

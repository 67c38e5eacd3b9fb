"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter

from ferry_api.deps import RuntimeDep
from ferry_api.errors import error_body

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(runtime: RuntimeDep) -> object:
    """The store and the bus answer."""
    try:
        await runtime.store.last_position()
    except Exception as exc:
        return error_body(503, "unavailable", f"event store unreachable: {type(exc).__name__}")
    return {"status": "ready"}

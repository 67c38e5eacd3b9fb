"""One router per resource, all under /api/v1 except the health probes."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from ferry_api.routes import health

    return [health.router]

"""One router per resource, all under /api/v1 except the health probes."""

from __future__ import annotations

from fastapi import APIRouter


def routers() -> list[APIRouter]:
    from ferry_api.http.routes import (
        apps,
        auth,
        events,
        health,
        hosts,
        releases,
        tickets,
        users,
        webhooks,
    )

    return [
        health.router,
        auth.router,
        users.router,
        apps.router,
        hosts.router,
        events.router,
        tickets.router,
        releases.router,
        webhooks.router,
    ]

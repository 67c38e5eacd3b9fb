"""The FastAPI application: routers under /api/v1, error bodies, the web UI's static files."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ferry_api.errors import install_error_handlers
from ferry_api.metrics import MetricsMiddleware
from ferry_api.routes import routers
from ferry_api.runtime import Runtime

WEB = Path(__file__).parent / "web"


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="Ferry",
        version="0.1.0",
        description="Code release tickets: staging, four-eyes approval, tagged releases, "
        "atomic rsync deploys and rollbacks, with an append-only audit log.",
        openapi_url="/openapi.json",
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=runtime.metrics)
    for router in routers():
        app.include_router(router)
    if (WEB / "index.html").exists():
        app.mount("/", StaticFiles(directory=WEB, html=True), name="web")
    return app

"""The FastAPI application of a runtime: routers under /api/v1, error bodies, request metrics,
security headers, the client's scheme and address behind trusted proxies, and the web UI's
static files at /."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ferry_api.http.errors import install_error_handlers
from ferry_api.http.headers import SecurityHeadersMiddleware
from ferry_api.http.metrics import MetricsMiddleware
from ferry_api.http.routes import routers
from ferry_api.runtime import Runtime

WEB = Path(__file__).parent / "web"


def asgi_app(runtime: Runtime) -> FastAPI:
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
    app.add_middleware(SecurityHeadersMiddleware)
    # Outermost: the scheme (Secure cookies) and client address (login throttle) every layer
    # sees. Servers run uvicorn with proxy_headers=False, so this is the only place they change.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(runtime.settings.trusted_proxies))
    for router in routers():
        app.include_router(router)
    if (WEB / "index.html").exists():
        app.mount("/", StaticFiles(directory=WEB, html=True), name="web")
    return app

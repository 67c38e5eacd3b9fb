"""Headers every response carries: no framing by other sites (clickjacking), no content sniffing.

The UI's own Content-Security-Policy is the <meta> tag in web/index.html; `frame-ancestors` is
ignored in a <meta> policy, so it comes as a header. A browser enforces both policies.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


class SecurityHeadersMiddleware:
    """An ASGI middleware (no buffering: the SSE stream passes as it is sent)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.append(name, value)
            await send(message)

        await self.app(scope, receive, sending)

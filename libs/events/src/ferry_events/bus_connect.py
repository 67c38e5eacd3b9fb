"""Opening the bus at a service's start when the broker may not be up yet: tried again with a
capped backoff and one clear log line each time (`bus.unreachable`, the URL without its password),
until it answers or the service is told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import structlog

from ferry_events.backends import open_bus

if TYPE_CHECKING:
    from ferry_events.bus import Bus

log = structlog.get_logger()

FIRST_WAIT = 0.5  # seconds before the second try, doubled for each further one
MAX_WAIT = 30.0


def redacted(url: str) -> str:
    """The URL with its password replaced by `***`: what a log may show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


async def open_bus_when_reachable(url: str, stop: asyncio.Event, **options: Any) -> Bus | None:
    """open_bus(url, **options), tried again while the broker cannot be reached (refused,
    reset, login refused while users are being provisioned); None once `stop` is set. A broker
    certificate that fails verification is no outage: raised at once."""
    tries = 0
    while True:
        try:
            return await _open_unless_stopped(url, stop, options)
        except ConnectionError as error:
            if _certificate_refused(error):
                raise
            tries += 1
            wait = min(FIRST_WAIT * 2 ** (tries - 1), MAX_WAIT)
            log.warning(
                "bus.unreachable",
                url=redacted(url),
                error=f"{type(error).__name__}: {error}",
                tries=tries,
                retry_in=wait,
            )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await stop.wait()
        if stop.is_set():
            return None


async def _open_unless_stopped(url: str, stop: asyncio.Event, options: Any) -> Bus | None:
    """One attempt, abandoned (None) when `stop` is set while it waits on the network."""
    if stop.is_set():
        return None
    opening = asyncio.ensure_future(open_bus(url, **options))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({opening, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not opening.done():
            opening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await opening
    return None if opening.cancelled() else opening.result()


def _certificate_refused(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(error)

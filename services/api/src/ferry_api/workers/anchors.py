"""Log anchors: the head of the log, signed, written outside the database at every release and
at least every FERRY_ANCHOR_INTERVAL_SECONDS while the log grows (ferry_events.anchors says what
that proves). Off unless FERRY_ANCHOR_SINK names a sink and the API has a signing key."""

from __future__ import annotations

import asyncio
import time

import structlog
from ferry_events.anchors import AnchorError, anchor_head, open_sink
from ferry_events.schemas import TicketPublished
from ferry_events.signing import load_private_key

from ferry_api.runtime import Runtime

log = structlog.get_logger()

LOOK_SECONDS = 2.0  # how often new events are looked at for a release
PAGE = 5000


async def run(runtime: Runtime) -> None:
    settings = runtime.settings
    if not settings.anchor_sink or settings.signing_key_file is None:
        return
    sink = open_sink(settings.anchor_sink)
    key = load_private_key(settings.signing_key_file)
    seen = anchored = 0
    anchored_at = float("-inf")
    while True:
        released, seen = await _new_events(runtime, seen)
        due = time.monotonic() - anchored_at >= settings.anchor_interval_seconds
        if seen > anchored and (released or due):
            try:
                anchor = await anchor_head(runtime.store, sink, key)
            except AnchorError as error:  # the sink is down: the next round tries again
                log.warning("anchor.not_written", reason=str(error)[:200])
            else:
                if anchor is not None:
                    anchored, anchored_at = anchor.position, time.monotonic()
                    log.info("anchor.written", position=anchor.position, release=released)
        await asyncio.sleep(LOOK_SECONDS)


async def _new_events(runtime: Runtime, after: int) -> tuple[bool, int]:
    """Whether a release went live among the events after `after`, and the last position."""
    released = False
    while events := await runtime.store.read_all(after=after, limit=PAGE):
        released = released or any(e.type == TicketPublished.type_name for e in events)
        after = events[-1].position
    return released, after

"""A counting projection, and a runner for it: `python run_projection.py <database_url>
rebuild|catch_up <batch>` prints how many events it applied. The projection tests start it as a
subprocess so they can SIGKILL it mid-rebuild.
"""

from __future__ import annotations

import asyncio
import sys

from ferry_events import StoredEvent
from ferry_events.backends import open_store
from ferry_events.logs import configure_logging
from ferry_events.projection import DocumentBatch, ProjectionRunner


class CountingProjection:
    """Counts per stream type, one document per stream whose counters show every event was
    applied exactly once and in order, and the set of open tickets (puts and deletes)."""

    name = "counting"
    collections = ("stream_types", "streams", "open_tickets")

    async def apply(self, docs: DocumentBatch, event: StoredEvent) -> None:
        kind = event.stream.split("-", 1)[0]
        counts = await docs.get("stream_types", kind) or {"kind": kind, "events": 0, "types": {}}
        counts["events"] += 1
        counts["types"][event.type] = counts["types"].get(event.type, 0) + 1
        docs.put("stream_types", kind, counts)

        stream = await docs.get("streams", event.stream) or {
            "stream": event.stream,
            "applied": 0,
            "version_sum": 0,
            "last_version": 0,
            "out_of_order": 0,
        }
        stream["applied"] += 1
        stream["version_sum"] += event.version
        stream["out_of_order"] += int(event.version != stream["last_version"] + 1)
        stream["last_version"] = event.version
        stream["last_position"] = event.position
        docs.put("streams", event.stream, stream)

        if event.type == "ticket.submitted":
            ticket = event.data["ticket_id"]
            docs.put("open_tickets", ticket, {"ticket_id": ticket, "since": event.position})
        elif event.type == "ticket.cancelled":
            docs.delete("open_tickets", event.data["ticket_id"])


async def run_once(database_url: str, mode: str, batch: int) -> int:
    store = await open_store(database_url)
    try:
        runner = ProjectionRunner(store, CountingProjection(), batch=batch)
        return await (runner.rebuild() if mode == "rebuild" else runner.catch_up())
    finally:
        await store.close()


if __name__ == "__main__":
    configure_logging("projection", json=False)
    print(asyncio.run(run_once(sys.argv[1], sys.argv[2], int(sys.argv[3]))), flush=True)

"""Runs one relay until killed: `python run_relay.py <database_url> <broker_url>`.

The relay tests start it as a subprocess so they can SIGKILL it mid-batch.
"""

from __future__ import annotations

import asyncio
import sys

from ferry_events.backends import open_bus, open_store
from ferry_events.logs import configure_logging
from ferry_events.relay import Relay


async def relay_until_killed(database_url: str, broker_url: str) -> None:
    store = await open_store(database_url)
    bus = await open_bus(broker_url)
    try:
        await Relay(store, bus, standby_seconds=0.5).run()
    finally:
        await bus.close()
        await store.close()


if __name__ == "__main__":
    configure_logging("relay", json=False)
    asyncio.run(relay_until_killed(sys.argv[1], sys.argv[2]))

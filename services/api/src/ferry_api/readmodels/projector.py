"""The Projector keeps every read model of this API process up to date from the log, with
read-your-writes: a command that appended up to position P awaits `caught_up(P)` before it
answers, so the next GET of the same client sees its change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import structlog
from ferry_events.envelope import StoredEvent
from ferry_events.projection import LogWithReadModels, ProjectionRunner, catch_up_together

from ferry_api.readmodels import all_projections

log = structlog.get_logger()

BATCH = 1000  # events per read of the log


class Projector:
    def __init__(self, store: LogWithReadModels) -> None:
        self.store = store
        self.projections = all_projections()
        self.runners = [ProjectionRunner(store, p) for p in self.projections]
        self.position = 0
        self._moved = asyncio.Condition()

    async def catch_up(self, given: tuple[int, list[StoredEvent]] | None = None) -> None:
        # All read models from one read of the new events, committed in one transaction: a
        # command's reply waits for one round of reads and writes, not one per read model.
        position = await catch_up_together(self.store, self.runners, batch=BATCH, given=given)
        async with self._moved:
            self.position = position if self.runners else await self.store.last_position()
            self._moved.notify_all()

    async def run(self) -> None:
        await self.catch_up()
        after = self.position
        async for events in self.store.subscribe(after=after, batch=BATCH):
            await self.catch_up(given=(after, events))
            after = events[-1].position if events else after

    async def caught_up(self, position: int, within: float = 10.0) -> None:
        """Wait until every read model has applied `position` (best effort after timeout)."""
        try:
            async with asyncio.timeout(within), self._moved:
                await self._moved.wait_for(lambda: self.position >= position)
        except TimeoutError:
            log.warning("readmodels.lagged", wanted=position, at=self.position)

    async def rebuild(self, names: Collection[str] | None = None) -> None:
        """Drop and rebuild from position 0 the named read models (default: all)."""
        for projection, runner in zip(self.projections, self.runners, strict=True):
            if names is None or projection.name in names:
                await runner.rebuild()
        await self.catch_up()

"""The relay: publishes every stored event to the bus in global order, at least once, with
publisher confirms, and checkpoints only what the broker confirmed. One relay is active at a time.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from ferry_events.bus import EVENTS, Bus, BusError
from ferry_events.envelope import Message, StoredEvent
from ferry_events.projection import LogWithReadModels

if TYPE_CHECKING:  # the signer comes from the caller: a relay without one needs no cryptography
    from ferry_events.signing import CommandSigner

log = structlog.get_logger()


@dataclass
class Backoff:
    """Capped exponential delays: first, 2*first, ... up to cap; reset after progress."""

    first: float = 0.2
    cap: float = 5.0
    attempts: int = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2.0 ** min(self.attempts, 30))
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0


@dataclass(frozen=True)
class Run:
    """Consecutive events published in one call: all commands (mandatory) or all broadcasts."""

    mandatory: bool
    messages: list[Message]
    last_position: int


class Relay:
    """Stored events -> the EVENTS exchange. run() for ever; lag() for /metrics."""

    def __init__(
        self,
        store: LogWithReadModels,
        bus: Bus,
        name: str = "relay",
        *,
        batch: int = 1000,
        standby_seconds: float = 3.0,
        backoff: Backoff | None = None,
        signer: CommandSigner | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._name = name
        self._batch = batch
        self._standby_seconds = standby_seconds
        self._backoff = backoff or Backoff()
        self._signer = signer  # signs every command (mandatory message); broadcasts go as they are
        self._log = log.bind(relay=name)
        self.active = False  # holds the lock and publishes
        self.published = 0  # messages the broker confirmed

    async def run(self) -> None:
        """Take the lock and relay; while another relay holds it, stand by and retry."""
        standby_logged = False
        while True:
            pause = self._standby_seconds
            try:
                async with self._store.exclusive(self._name) as held:
                    if held:
                        standby_logged = False
                        await self._relay_while_active()
                    elif not standby_logged:
                        self._log.info(
                            "relay.standby_entered", reason="another relay holds the lock"
                        )
                        standby_logged = True
            except Exception as error:
                # The store failed (its lock may be gone with its connection) or another relay
                # moved the checkpoint: take the lock afresh before publishing again.
                pause = self._backoff.next_delay()
                self._log.warning("relay.stopped", error=repr(error), retry_in=pause)
            await asyncio.sleep(pause)

    async def lag(self) -> int:
        """Stored events not yet confirmed by the broker."""
        checkpoint = await self._store.checkpoint(self._name)
        return max(0, await self._store.last_position() - checkpoint)

    async def _relay_while_active(self) -> None:
        self._log.info("relay.activated")
        self.active = True
        try:
            while True:
                try:
                    await self._follow()
                except BusError as error:  # broker down, Unroutable, NotConfirmed
                    delay = self._backoff.next_delay()
                    self._log.warning("relay.retried", error=repr(error), retry_in=delay)
                    await asyncio.sleep(delay)
        finally:
            self.active = False

    async def _follow(self) -> None:
        """Publish from the checkpoint on; any error leaves to be retried from the checkpoint."""
        checkpoint = await self._store.checkpoint(self._name)
        subscription = self._store.subscribe(after=checkpoint, batch=self._batch)
        # The next batch is read and turned into messages while this one waits for confirms.
        preparing = asyncio.ensure_future(next_runs(subscription))
        try:
            while True:
                runs = await preparing
                preparing = asyncio.ensure_future(next_runs(subscription))
                if runs:
                    checkpoint = await self._publish(runs, checkpoint)
                    self._backoff.reset()
        finally:
            preparing.cancel()
            await asyncio.wait({preparing})  # unlike awaiting it, keeps our own cancellation
            if not preparing.cancelled():
                preparing.exception()  # retrieved: the error that matters is the one raised here
            if isinstance(subscription, AsyncGenerator):
                await subscription.aclose()

    async def _publish(self, runs: list[Run], checkpoint: int) -> int:
        """Publish a batch in order and move the checkpoint to what was confirmed."""
        confirmed = checkpoint
        try:
            for run in runs:
                await self._bus.publish(EVENTS, self._signed(run), mandatory=run.mandatory)
                confirmed = run.last_position
                self.published += len(run.messages)
        finally:
            # Also after a failure: keep what was confirmed so a blocked command is not
            # preceded by ever more duplicates of the events before it.
            if confirmed != checkpoint:
                await self._store.commit(self._name, checkpoint, confirmed, {})
        return confirmed

    def _signed(self, run: Run) -> list[Message]:
        """Sign a run of commands now, at publish time rather than when the batch was read: a
        command re-published after a broker outage gets a fresh expiry, never a stale one."""
        if self._signer is None or not run.mandatory:
            return run.messages
        return [self._signer.sign(message) for message in run.messages]


async def next_runs(subscription: AsyncIterator[list[StoredEvent]]) -> list[Run]:
    return list(runs_of(await anext(subscription)))


def runs_of(events: list[StoredEvent]) -> Iterator[Run]:
    """Split a batch where it switches between commands and broadcasts, keeping the order."""
    routed = [routing_of(event) for event in events]
    for mandatory, group in itertools.groupby(routed, key=lambda item: item[1]):
        items = list(group)
        yield Run(mandatory, [message for message, _, _ in items], items[-1][2])


def routing_of(event: StoredEvent) -> tuple[Message, bool, int]:
    """The event's message and whether it must reach a queue (a command)."""
    try:
        payload = event.payload()
    except ValueError as error:
        # A stored event that no longer parses must not stall every later one: broadcast it
        # under its wire name and say so loudly.
        log.error("relay.event_unparsed", position=event.position, error=str(error))
        return Message.of_stored(event, event.type), False, event.position
    mandatory = bool(getattr(payload, "is_command", False))
    return Message.of_stored(event, payload.routing_key()), mandatory, event.position

"""The Bus port: topic exchanges, durable queues, confirmed publishing, acked consuming.

Exchanges: EVENTS carries every stored event (relay), REPORTS carries agents' reports and
heartbeats to the API, DEAD receives what a queue's consumer gave up on, with the reason.

Errors:
    BusError
     ├── Unroutable      a mandatory message matched no queue
     └── NotConfirmed    the broker refused (nack) or lost a publish

Implementations: RabbitMqBus (aio-pika) and MemoryBus (in-process). Both pass
tests/contract/test_bus.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from ferry_events.envelope import Message

EVENTS = "ferry.events"
REPORTS = "ferry.reports"
DEAD = "ferry.dead"
ERROR_HEADER = "x-ferry-error"  # on dead letters: why the consumer gave up

Handler = Callable[[Message], Awaitable[None]]


class BusError(Exception):
    """Base of the bus's errors."""


class Unroutable(BusError):
    """A mandatory message matched no queue: a misconfiguration, never silence."""


class NotConfirmed(BusError):
    """The broker did not confirm a publish."""


class Consumer(Protocol):
    async def stop(self) -> None:
        """Stop taking messages; in-flight handlers finish and are acked first."""


class Bus(Protocol):
    async def declare_queue(
        self, queue: str, bindings: Sequence[str], exchange: str = EVENTS
    ) -> None:
        """Declare a durable queue (and its dead-letter queue) bound by topic patterns;
        idempotent."""

    async def publish(
        self, exchange: str, messages: Sequence[Message], *, mandatory: bool = True
    ) -> None:
        """Publish persistent messages in order; return when every one is confirmed."""

    async def consume(
        self, queue: str, handler: Handler, *, prefetch: int = 16, max_attempts: int = 5
    ) -> Consumer:
        """Ack a message after handler returns; on an exception retry it, and after
        max_attempts dead-letter it to `<queue>.dead` with ERROR_HEADER set."""

    async def close(self) -> None: ...


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dead"

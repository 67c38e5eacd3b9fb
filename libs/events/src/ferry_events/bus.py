"""The Bus port: topic exchanges, durable queues, confirmed publishing, acked consuming.

Exchanges: EVENTS carries every stored event (relay), REPORTS carries agents' reports and
heartbeats to the API, DEAD receives what a queue's consumer gave up on, with the reason.

Identity: every handle publishes as one broker user (`Bus.user`); a consumer sees it as
`Message.sender`, which only the bus sets (RabbitMQ validates the `user_id` property against the
connection's login). The API trusts a report's sender, never what the report says about itself.

Errors:
    BusError
     ├── Unroutable      a mandatory message matched no queue
     ├── NotConfirmed    the broker refused (nack) or lost a publish
     └── Refused         the broker denied this user the operation (its permissions)

What a handler may raise to steer its message (see `Bus.consume` for the whole policy):
    Undeliverable        this message can never succeed: dead-lettered at once, with the reason
    Unavailable          a dependency (store, broker) is down: the message is held and retried

Implementations: RabbitMqBus (aio-pika) and MemoryBus (in-process). Both pass
tests/contract/test_bus.py; failure_policy.py is the retry policy they share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from ferry_events.envelope import Message

EVENTS = "ferry.events"
REPORTS = "ferry.reports"
DEAD = "ferry.dead"
HOLD_SECONDS = 15 * 60.0  # longest a message is held for an outage before it is returned
# On dead letters: why the consumer gave up, and where the message was going (for a replay).
ERROR_HEADER = "x-ferry-error"
QUEUE_HEADER = "x-ferry-queue"
EXCHANGE_HEADER = "x-ferry-exchange"
ROUTING_KEY_HEADER = "x-ferry-routing-key"
SENDER_HEADER = "x-ferry-sender"  # the publisher's broker user; the dead letter's is the consumer's
DEAD_AT_HEADER = "x-ferry-dead-at"
DEAD_LETTER_HEADERS = frozenset(
    {ERROR_HEADER, QUEUE_HEADER, EXCHANGE_HEADER, ROUTING_KEY_HEADER, SENDER_HEADER, DEAD_AT_HEADER}
)

Handler = Callable[[Message], Awaitable[None]]


class BusError(Exception):
    """Base of the bus's errors."""


class Unroutable(BusError):
    """A mandatory message matched no queue: a misconfiguration, never silence."""


class NotConfirmed(BusError):
    """The broker did not confirm a publish."""


class Refused(BusError):
    """The broker denied this user the operation: least privilege at work, or a missing grant."""


class Undeliverable(Exception):
    """Raised by a handler: this message can never succeed (malformed, an unknown type, a typed
    permanent refusal). The bus dead-letters it at once with this reason: no retry."""


class Unavailable(Exception):
    """Raised by a handler: something it needs (the store, the broker) does not answer. The bus
    holds the message and tries again until it does; never dead-lettered for this."""


class Consumer(Protocol):
    async def stop(self) -> None:
        """Stop taking messages; in-flight handlers finish and are acked first."""


class Bus(Protocol):
    @property
    def user(self) -> str:
        """The identity this handle publishes as; consumers see it as Message.sender."""

    async def declare_queue(
        self, queue: str, bindings: Sequence[str], exchange: str = EVENTS
    ) -> None:
        """Declare a durable queue (and its dead-letter queue) bound by topic patterns;
        idempotent. A user the broker may not let declare it gets the provisioned queue, or
        BusError if there is none."""

    async def publish(
        self, exchange: str, messages: Sequence[Message], *, mandatory: bool = True
    ) -> None:
        """Publish persistent messages in order, as `self.user` whatever their `sender` says;
        return when every one is confirmed."""

    async def consume(
        self,
        queue: str,
        handler: Handler,
        *,
        prefetch: int = 16,
        max_attempts: int = 5,
        hold_seconds: float = HOLD_SECONDS,
    ) -> Consumer:
        """Ack a message after handler returns. When it raises, by what it raised (the
        exception, or one it was raised from: failure_policy.verdict):

        - Undeliverable, or a message that cannot even be read: dead-lettered at once to
          `<queue>.dead`, with ERROR_HEADER (the reason) and where it was going.
        - infrastructure (Unavailable, NotConfirmed, OSError, asyncpg's connection, shutdown
          and resource errors, SQLite's "database is locked"): held, unacked, and handed to the
          handler again (`redelivered`) after a backoff of 0.1 s doubling up to 30 s, for as
          long as it takes; never dead-lettered, never counted against max_attempts. After
          `hold_seconds` it goes back to the queue (below RabbitMQ's consumer_timeout, 30 min
          by default, which would close the channel), and is taken again.
        - anything else, a bug: returned to the queue after a backoff (0.1 s doubling up to
          5 s) and dead-lettered on its max_attempts-th failure.

        A returned message counts against the queue's delivery limit (RabbitMQ: 20): only an
        outage longer than about 19 times hold_seconds ends in the broker's own dead-lettering.
        Dead letters are listed and replayed with ferry_events.dead_letters."""

    async def close(self) -> None: ...


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dead"


def dead_letter_headers(
    reason: str, *, queue: str, exchange: str, routing_key: str, sender: str | None
) -> dict[str, str]:
    """What a consumer adds to a message it dead-letters: why, and where it was going."""
    headers = {
        ERROR_HEADER: reason[:4000],
        QUEUE_HEADER: queue,
        EXCHANGE_HEADER: exchange,
        ROUTING_KEY_HEADER: routing_key,
        DEAD_AT_HEADER: datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return headers | ({SENDER_HEADER: sender} if sender else {})

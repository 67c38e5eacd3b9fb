"""Dead letters: the messages a consumer gave up on, kept in `<queue>.dead` with the reason and
where they were going, for an operator to list, show and replay (`ferry-api dead-letters`).

    letters = await open_dead_letters(broker_url)
    for letter in await letters.list_letters(["api.reports"]):
        print(letter.message_id, letter.reason)
    await letters.replay(["api.reports"], letter.message_id)   # None: every one

Listing takes nothing away. A replay publishes the message, as it was first published (body,
id, type, headers, routing key; by default as its first sender), to the exchange it was going
to, and only then removes the dead letter. Consumers de-duplicate by message id, so a replay of
what was in the end handled after all does no harm.

Implementations: RabbitMqDeadLetters (dead_letters_rabbitmq.py: basic.get, so a dead-letter queue
must not have a consumer of its own) and MemoryDeadLetters, for a MemoryBus in this process.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ferry_events.bus import (
    DEAD_AT_HEADER,
    DEAD_LETTER_HEADERS,
    ERROR_HEADER,
    EXCHANGE_HEADER,
    QUEUE_HEADER,
    ROUTING_KEY_HEADER,
    SENDER_HEADER,
    dead_letter_queue,
)
from ferry_events.topology import agent_queues, api_queues

if TYPE_CHECKING:
    from ferry_events.bus_memory import MemoryBus
    from ferry_events.envelope import Message

# Set by RabbitMQ itself when it dead-letters (a queue's delivery limit): the reason and origin.
BROKER_DEATH = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")


class DeadLetterError(Exception):
    """A dead-letter operation failed; the message says why, for the operator."""


@dataclass(frozen=True)
class DeadLetter:
    queue: str  # the work queue that gave it up; the letter is in `<queue>.dead`
    message_id: str
    type: str
    reason: str
    exchange: str  # where a replay publishes it ("" is the default exchange)
    routing_key: str
    sender: str | None  # the broker user that first published it
    dead_at: str | None
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # its own, without the above

    def summary(self) -> dict[str, Any]:
        """Everything but the body, for a listing."""
        return {k: v for k, v in self.__dict__.items() if k not in ("body", "headers")}


class DeadLetters(Protocol):
    async def list_letters(self, queues: Sequence[str]) -> list[DeadLetter]:
        """The dead letters of these (work) queues, oldest first; nothing is taken away."""

    async def replay(
        self, queues: Sequence[str], message_id: str | None, *, as_sender: bool = True
    ) -> list[DeadLetter]:
        """Republish the dead letters with this id (None: all of them) and remove them;
        `as_sender=False` publishes as this connection's own user. Raises DeadLetterError,
        leaving the dead letter where it was, when the broker does not take the message."""

    async def close(self) -> None: ...


def known_queues(hosts: Iterable[str] = ()) -> list[str]:
    """The work queues of a Ferry vhost: the API's, the staging agent's and the publisher's,
    and the queue of each host named."""
    return [spec.name for spec in [*api_queues(), *agent_queues(hosts)]]


def find(letters: Iterable[DeadLetter], message_id: str) -> list[DeadLetter]:
    found = [letter for letter in letters if letter.message_id == message_id]
    if not found:
        raise DeadLetterError(f"no dead letter {message_id!r}")
    return found


def letter_of(
    queue: str,
    headers: Mapping[str, Any],
    *,
    message_id: str,
    type: str,
    body: bytes,
    sender: str | None,
) -> DeadLetter:
    """A dead letter from what a consumer (ours, or the broker's delivery limit) left on it."""
    text = {k: _text(v) for k, v in headers.items()}
    death = _first_death(headers)
    return DeadLetter(
        queue=text.get(QUEUE_HEADER) or death.get("queue") or queue,
        message_id=message_id,
        type=type,
        reason=text.get(ERROR_HEADER) or f"broker: {death.get('reason', 'unknown')}",
        exchange=text.get(EXCHANGE_HEADER) or death.get("exchange", ""),
        routing_key=text.get(ROUTING_KEY_HEADER) or death.get("routing_key", ""),
        sender=text.get(SENDER_HEADER) or sender,
        dead_at=text.get(DEAD_AT_HEADER) or death.get("time"),
        body=body,
        headers={
            k: v
            for k, v in text.items()
            if k not in DEAD_LETTER_HEADERS and not k.startswith(BROKER_DEATH) and v is not None
        },
    )


def _first_death(headers: Mapping[str, Any]) -> dict[str, str]:
    """RabbitMQ's own record (x-death) of a message it dead-lettered."""
    deaths = headers.get("x-death")
    if not isinstance(deaths, list) or not deaths or not isinstance(deaths[-1], Mapping):
        return {}
    first = deaths[-1]  # newest first: the last entry is the first death
    keys = first.get("routing-keys") or [""]
    return {
        "queue": _text(first.get("queue")) or "",
        "reason": _text(first.get("reason")) or "",
        "exchange": _text(first.get("exchange")) or "",
        "routing_key": _text(keys[0]) or "",
        "time": _text(first.get("time")) or "",
    }


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if isinstance(value, list | dict) else str(value)


class MemoryDeadLetters:
    """Dead letters of a MemoryBus's broker (the embedded mode, tests)."""

    def __init__(self, bus: MemoryBus) -> None:
        self._broker, self._user = bus.broker, bus.user

    async def list_letters(self, queues: Sequence[str]) -> list[DeadLetter]:
        return [letter for _, letter in self._letters(queues)]

    async def replay(
        self, queues: Sequence[str], message_id: str | None, *, as_sender: bool = True
    ) -> list[DeadLetter]:
        replayed = []
        for message, letter in self._letters(queues):
            if message_id is not None and letter.message_id != message_id:
                continue
            original = message.model_copy(
                update={
                    "routing_key": letter.routing_key,
                    "headers": letter.headers,
                    "sender": letter.sender if as_sender else self._user,
                }
            )
            if not self._broker.route(letter.exchange, original):
                where = f"{letter.exchange} {letter.routing_key!r}"
                raise DeadLetterError(f"{where}: no queue is bound, the dead letter stays")
            self._broker.queues[dead_letter_queue(letter.queue)].remove(message)
            replayed.append(letter)
        return replayed

    async def close(self) -> None:
        pass

    def _letters(self, queues: Sequence[str]) -> list[tuple[Message, DeadLetter]]:
        found = []
        for queue in queues:
            dead = self._broker.queues.get(dead_letter_queue(queue))
            for message in dead.ready() if dead else []:
                letter = letter_of(
                    queue,
                    message.headers,
                    message_id=message.message_id,
                    type=message.type,
                    body=json.dumps(message.body).encode(),
                    sender=message.sender,
                )
                found.append((message, letter))
        return found


async def open_dead_letters(url: str) -> DeadLetters:
    """`amqp://…` (or `amqps://…`, the system's CAs) for RabbitMQ. A `memory://` bus lives in
    one process only: use MemoryDeadLetters(bus) there."""
    if url.startswith(("amqp://", "amqps://")):
        from ferry_events.dead_letters_rabbitmq import RabbitMqDeadLetters

        return await RabbitMqDeadLetters.connect(url)
    raise ValueError("dead letters are kept by a broker: the URL must start with amqp(s)://")

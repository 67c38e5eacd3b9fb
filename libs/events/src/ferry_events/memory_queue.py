"""The queue of a MemoryBroker (bus_memory.py): deliveries in order, returned ones first as a
quorum queue does, counted like its x-delivery-count; and AMQP's topic matching.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from ferry_events.envelope import Message


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` is zero or more words."""
    return _words_match(pattern.split("."), routing_key.split("."))


def _words_match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_words_match(rest, words[skip:]) for skip in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _words_match(rest, words[1:])


@dataclass(frozen=True)
class Delivery:
    message: Message
    exchange: str = ""  # where it was published: a dead letter names it for a replay
    returns: int = 0  # times handed back unacked, like a quorum queue's x-delivery-count

    @property
    def attempt(self) -> int:
        return self.returns + 1

    def received(self) -> Message:
        if self.returns == 0:
            return self.message
        return self.message.model_copy(update={"redelivered": True})

    def returned(self) -> Delivery:
        return Delivery(self.message, self.exchange, self.returns + 1)


class MemoryQueue:
    def __init__(self) -> None:
        self._ready: deque[Delivery] = deque()
        self._nonempty = asyncio.Event()

    def put(self, delivery: Delivery) -> None:
        self._ready.append(delivery)
        self._nonempty.set()

    def requeue(self, delivery: Delivery) -> None:
        # A returned message goes first, as a quorum queue delivers returns before new ones.
        self._ready.appendleft(delivery.returned())
        self._nonempty.set()

    async def get(self) -> Delivery:
        while not self._ready:
            self._nonempty.clear()
            await self._nonempty.wait()
        return self._ready.popleft()

    def ready(self) -> list[Message]:
        """The messages waiting, in order, left where they are (dead_letters.py lists them)."""
        return [delivery.message for delivery in self._ready]

    def remove(self, message: Message) -> bool:
        """Take this very message out of the queue, as an ack would; False if it is not there."""
        for delivery in self._ready:
            if delivery.message is message:
                self._ready.remove(delivery)
                return True
        return False

"""What a consumer does with a message whose handler raised: the one retry policy RabbitMqBus and
MemoryBus share (the rules are in bus.Bus.consume's docstring).

    verdict(error)   UNDELIVERABLE (dead-letter now), UNAVAILABLE (hold: infrastructure) or
                     FAILED (a bug: counted retries, then dead-letter)
    Hold             one delivery held through an outage: the backoff, and when to give it back

Drivers are recognised by class name and module, never imported: an agent has no asyncpg.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Iterator
from typing import Any

import structlog

from ferry_events.bus import NotConfirmed, Unavailable, Undeliverable

log = structlog.get_logger()

RETRY_BACKOFF = 0.1  # seconds before the 2nd attempt, doubled for each further one
MAX_BACKOFF = 5.0  # a bug: it fails the same way soon enough
MAX_HOLD_BACKOFF = 30.0  # an outage: ask the store again at least this often
# asyncpg's classes (and their subclasses) that say the server or the link is the problem:
# class 08 connection errors, 57 operator intervention (admin shutdown, crash, starting up,
# cancelled), 53 insufficient resources (too many connections, disk full), a closed connection
# or pool on the client's side, and a pooled connection a dropped link left mid-operation
# (InternalClientError "another operation is in progress", seen after pg_terminate_backend).
ASYNCPG_UNAVAILABLE = frozenset(
    {
        "PostgresConnectionError",
        "OperatorInterventionError",
        "InsufficientResourcesError",
        "InterfaceError",
        "InternalClientError",
    }
)
# OSErrors that say something about a path, not about a server: as deterministic as a bug.
LOCAL_OS_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


class Verdict(enum.Enum):
    UNDELIVERABLE = "undeliverable"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"


def verdict(error: BaseException) -> Verdict:
    """The first exception in `error`'s chain (itself, then what it was raised from) that is
    Undeliverable or infrastructure decides; none: FAILED."""
    for link in _chain(error):
        if isinstance(link, Undeliverable):
            return Verdict.UNDELIVERABLE
        if is_infrastructure(link):
            return Verdict.UNAVAILABLE
    return Verdict.FAILED


def is_infrastructure(error: BaseException) -> bool:
    """This one exception (not its chain) says a store or broker is unavailable."""
    if isinstance(error, Unavailable | NotConfirmed):
        return True
    if isinstance(error, OSError):  # ConnectionError, TimeoutError, a socket's errors
        return not isinstance(error, LOCAL_OS_ERRORS)
    kind = type(error)
    if kind.__module__ == "sqlite3" and kind.__name__ == "OperationalError":
        return any(word in str(error) for word in ("locked", "busy"))
    return any(
        base.__module__.startswith("asyncpg") and base.__name__ in ASYNCPG_UNAVAILABLE
        for base in kind.__mro__
    )


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def retry_delay(attempt: int) -> float:
    """The pause before a failed (bug) message goes back to its queue."""
    return float(min(RETRY_BACKOFF * 2 ** (attempt - 1), MAX_BACKOFF))


def hold_delay(tries: int) -> float:
    return float(min(RETRY_BACKOFF * 2 ** (tries - 1), MAX_HOLD_BACKOFF))


class Hold:
    """One delivery held through an outage. `wait` sleeps before the next try (woken early by
    `stopping`) and says whether to try again or give the message back to its queue."""

    def __init__(self, seconds: float, stopping: asyncio.Event) -> None:
        self._seconds = seconds
        self._stopping = stopping
        self._since: float | None = None
        self.tries = 0

    async def wait(self, **context: Any) -> bool:
        """False: give the message back now (held for `seconds`, or the consumer stops)."""
        now = asyncio.get_running_loop().time()
        self._since = now if self._since is None else self._since
        self.tries += 1
        left = self._since + self._seconds - now
        if left <= 0 or self._stopping.is_set():
            log.warning("message returned after holding it", held_for=now - self._since, **context)
            return False
        delay = min(hold_delay(self.tries), left)
        log.warning(
            "infrastructure unavailable, message held", tries=self.tries, retry_in=delay, **context
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._stopping.wait()
        return not self._stopping.is_set()


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The exception, then its cause or (unless suppressed) its context, and so on."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        context = None if current.__suppress_context__ else current.__context__
        current = current.__cause__ or context

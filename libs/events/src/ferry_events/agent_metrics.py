"""Prometheus metrics of an agent, counted off the final report of each command and served by
prometheus_client's own HTTP server. prometheus_client (the `ferry-events[metrics]` extra) is
imported only when an instance is made, which the agent runtime does only when a metrics port is
set: an agent without metrics never loads it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ferry_events.registry import Event

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

Report = Callable[[Event], Awaitable[None]]


class CommandMetrics:
    """Commands by outcome and their duration. Own registry per agent, so several agents can
    run in one process (tests, the embedded demo)."""

    registry: CollectorRegistry
    commands: Counter
    seconds: Histogram

    def __init__(
        self, prefix: str, command: str, completed: type[Event], failed: type[Event]
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self._completed, self._failed = completed, failed
        self.commands = Counter(
            f"{prefix}_commands",
            f"{command} commands handled, by outcome",
            ["app", "result"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            f"{prefix}_command_seconds",
            f"From taking a {command} command to its final report",
            ["app"],
            registry=self.registry,
        )

    def observe(self, event: Event) -> None:
        """Count a final report; agents with more to say extend this."""
        result = "completed" if isinstance(event, self._completed) else "failed"
        self.commands.labels(app=getattr(event, "app"), result=result).inc()  # noqa: B009

    def counting(self, report: Report) -> Report:
        """`report`, counting the command's outcome as its final report goes out."""
        started = time.monotonic()

        async def counted(event: Event) -> None:
            await report(event)  # first: a report the bus did not take is retried, not counted
            if isinstance(event, self._completed | self._failed):
                self.observe(event)
                app = getattr(event, "app")  # noqa: B009
                self.seconds.labels(app=app).observe(time.monotonic() - started)

        return counted

    @contextmanager
    def served(self, address: str, port: int) -> Iterator[None]:
        """Serve /metrics on address:port for the duration of the block."""
        from prometheus_client import start_http_server

        server, thread = start_http_server(port, addr=address, registry=self.registry)
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

"""Prometheus metrics of the publisher, counted off the reports its handler sends and served
by prometheus_client's own HTTP server when FERRY_METRICS_PORT is set."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from ferry_events.registry import Event
from ferry_events.schemas import ReleaseTagFailed, ReleaseTagged
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from ferry_publisher.handlers import Report


class PublisherMetrics:
    """Own registry per publisher, so several can run in one process (tests, embedded)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "ferry_publisher_commands",
            "Release tag commands handled, by outcome",
            ["app", "result"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "ferry_publisher_command_seconds",
            "From taking a release tag command to its final report",
            ["app"],
            registry=self.registry,
        )

    def counting(self, report: Report) -> Report:
        """`report`, counting the command's outcome as its final report goes out."""
        started = time.monotonic()

        async def counted(event: Event) -> None:
            if isinstance(event, ReleaseTagged | ReleaseTagFailed):
                result = "completed" if isinstance(event, ReleaseTagged) else "failed"
                self.commands.labels(app=event.app, result=result).inc()
                self.seconds.labels(app=event.app).observe(time.monotonic() - started)
            await report(event)

        return counted

    @contextmanager
    def served(self, address: str, port: int) -> Iterator[None]:
        """Serve /metrics on address:port for the duration of the block."""
        server, thread = start_http_server(port, addr=address, registry=self.registry)
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

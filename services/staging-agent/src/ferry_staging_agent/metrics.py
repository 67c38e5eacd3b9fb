"""Prometheus metrics of one staging agent, counted off the reports its handler sends and served
by prometheus_client's own HTTP server when FERRY_METRICS_PORT is set."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from ferry_events.registry import Event
from ferry_events.schemas import StagingCompleted, StagingFailed
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from ferry_staging_agent.handlers import Report


class StagingMetrics:
    """Own registry per agent, so several agents can run in one process (tests, embedded)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "ferry_staging_commands",
            "Staging commands handled, by outcome",
            ["app", "result"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "ferry_staging_command_seconds",
            "From taking a staging command to its final report",
            ["app"],
            registry=self.registry,
        )

    def counting(self, report: Report) -> Report:
        """`report`, counting the command's outcome as its final report goes out."""
        started = time.monotonic()

        async def counted(event: Event) -> None:
            if isinstance(event, StagingCompleted | StagingFailed):
                result = "completed" if isinstance(event, StagingCompleted) else "failed"
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

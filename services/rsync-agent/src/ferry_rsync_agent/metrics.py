"""Prometheus metrics of one rsync agent, counted off the reports its handler sends. Imported
only when metrics_port is set, so an agent without metrics never loads prometheus_client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from ferry_events.registry import Event
from ferry_events.schemas import HostSyncCompleted, HostSyncFailed
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ferry_rsync_agent.handlers import Report


class SyncMetrics:
    """Own registry per agent, so several agents can run in one process (tests, embedded)."""

    def __init__(self) -> None:
        reg = self.registry = CollectorRegistry()
        self.commands = Counter(
            "ferry_rsync_commands",
            "Sync commands handled, by outcome",
            ["app", "result"],
            registry=reg,
        )
        self.seconds = Histogram(
            "ferry_rsync_command_seconds",
            "From taking a sync command to its final report",
            ["app"],
            registry=reg,
        )
        self.version = Gauge(
            "ferry_rsync_current_version",
            "Release `current` points to, by app",
            ["app"],
            registry=reg,
        )
        self.bytes = Counter(
            "ferry_rsync_bytes_transferred", "Bytes rsync received, by app", ["app"], registry=reg
        )

    def counting(self, report: Report) -> Report:
        """`report`, counting the command's outcome as its final report goes out."""
        started = time.monotonic()

        async def counted(event: Event) -> None:
            if isinstance(event, HostSyncCompleted):
                self.version.labels(app=event.app).set(event.version)
                self.bytes.labels(app=event.app).inc(event.bytes_transferred)
            if isinstance(event, HostSyncCompleted | HostSyncFailed):
                result = "completed" if isinstance(event, HostSyncCompleted) else "failed"
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

"""Prometheus metrics of one rsync agent, plus the live version and bytes received per app.
prometheus_client is imported only when SyncMetrics is made (metrics_port set), so an agent
without metrics never loads it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferry_events.agent_metrics import CommandMetrics
from ferry_events.registry import Event
from ferry_events.schemas import HostSyncCompleted, HostSyncFailed

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge


class SyncMetrics(CommandMetrics):
    version: Gauge
    bytes: Counter

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge

        super().__init__("ferry_rsync", "Sync", HostSyncCompleted, HostSyncFailed)
        self.version = Gauge(
            "ferry_rsync_current_version",
            "Release `current` points to, by app",
            ["app"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "ferry_rsync_bytes_transferred",
            "Bytes rsync received, by app",
            ["app"],
            registry=self.registry,
        )

    def observe(self, event: Event) -> None:
        super().observe(event)
        if isinstance(event, HostSyncCompleted):
            self.version.labels(app=event.app).set(event.version)
            self.bytes.labels(app=event.app).inc(event.bytes_transferred)

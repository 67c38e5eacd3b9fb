"""Prometheus metrics of one rsync agent, plus the live version and bytes received per app.
Imported only when metrics_port is set, so an agent without metrics never loads
prometheus_client."""

from __future__ import annotations

from ferry_events.agent_metrics import CommandMetrics
from ferry_events.registry import Event
from ferry_events.schemas import HostSyncCompleted, HostSyncFailed
from prometheus_client import Counter, Gauge


class SyncMetrics(CommandMetrics):
    def __init__(self) -> None:
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

"""Prometheus metrics of the publisher (served when FERRY_METRICS_PORT is set)."""

from __future__ import annotations

from ferry_events.agent_metrics import CommandMetrics
from ferry_events.schemas import ReleaseTagFailed, ReleaseTagged


class PublisherMetrics(CommandMetrics):
    def __init__(self) -> None:
        super().__init__("ferry_publisher", "Release tag", ReleaseTagged, ReleaseTagFailed)

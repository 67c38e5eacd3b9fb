"""Prometheus metrics of one staging agent (served when FERRY_METRICS_PORT is set)."""

from __future__ import annotations

from ferry_events.agent_metrics import CommandMetrics
from ferry_events.schemas import StagingCompleted, StagingFailed


class StagingMetrics(CommandMetrics):
    def __init__(self) -> None:
        super().__init__("ferry_staging", "Staging", StagingCompleted, StagingFailed)

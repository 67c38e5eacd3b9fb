"""Prometheus metrics of one API process: HTTP requests (counted by http/metrics.py), tickets by
state, relay, projection, report-ingest and heartbeat lag. Each process has its own registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import get_args

from ferry_events.projection import LogWithReadModels
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ferry_api.domain import TicketState
from ferry_api.readmodels.projector import Projector
from ferry_api.readmodels.tickets import TICKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class IngestStats:
    """What report ingest (workers/reports.py) counts, for /metrics."""

    received: int = 0
    recorded: int = 0
    duplicates: int = 0
    ignored: int = 0
    rejected: int = 0  # from a sender who may not say them (report.rejected)
    lag_seconds: float = 0.0  # sent -> recorded, of the latest report that said when it was sent
    last_recorded_at: float | None = None  # time.time() of the latest append


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "ferry_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "ferry_http_request_seconds", "HTTP request duration", ["method", "route"], registry=reg
        )
        self.tickets = Gauge("ferry_tickets", "Tickets by state", ["state"], registry=reg)
        self.events = Gauge(
            "ferry_events_stored", "Position of the last stored event", registry=reg
        )
        self.relay_lag = Gauge(
            "ferry_relay_lag_events", "Stored events the relay has not published yet", registry=reg
        )
        self.projection_lag = Gauge(
            "ferry_projection_lag_events",
            "Stored events a read model has not applied yet",
            ["projection"],
            registry=reg,
        )
        self.reports = Gauge(
            "ferry_reports",
            "Agent reports taken from the bus, by outcome",
            ["outcome"],
            registry=reg,
        )
        self.report_lag = Gauge(
            "ferry_report_ingest_lag_seconds",
            "From an agent sending its latest report to the API storing it",
            registry=reg,
        )
        self.heartbeats = Counter("ferry_heartbeats", "Agent heartbeats received", registry=reg)
        self.heartbeats_dropped = Counter(
            "ferry_heartbeats_dropped",
            "Heartbeats dropped: sent by another user than the host's own agent",
            registry=reg,
        )
        self.heartbeat_lag = Gauge(
            "ferry_heartbeat_lag_seconds",
            "From an agent sending its latest heartbeat to the API storing it",
            registry=reg,
        )

    def heartbeat_received(self, sent_at: str, received: datetime) -> None:
        self.heartbeats.inc()
        try:
            sent = datetime.fromisoformat(sent_at)
        except ValueError:
            return
        if sent.tzinfo is not None:
            self.heartbeat_lag.set(max(0.0, (received - sent).total_seconds()))

    async def refresh(
        self, store: LogWithReadModels, projector: Projector, ingest: IngestStats
    ) -> None:
        """Read the gauges that live in the store, right before a scrape."""
        last = await store.last_position()
        self.events.set(last)
        self.relay_lag.set(max(0, last - await store.checkpoint("relay")))
        for projection, runner in zip(projector.projections, projector.runners, strict=True):
            self.projection_lag.labels(projection.name).set(await runner.lag())
        self.report_lag.set(ingest.lag_seconds)
        for outcome in ("received", "recorded", "duplicates", "ignored", "rejected"):
            self.reports.labels(outcome).set(getattr(ingest, outcome))
        for state in get_args(TicketState):
            self.tickets.labels(state).set(await store.count(TICKETS, {"state": state}))

    def render(self) -> bytes:
        return generate_latest(self.registry)

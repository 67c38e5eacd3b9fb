"""Prometheus metrics of one API process: HTTP requests (ASGI middleware), tickets by state,
relay, projection, report-ingest and heartbeat lag. Each process has its own registry.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferry_api.reports import ingest_stats
from ferry_api.tickets import TicketState

if TYPE_CHECKING:
    from ferry_api.runtime import Runtime

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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

    async def refresh(self, runtime: Runtime) -> None:
        """Read the gauges that live in the store, right before a scrape."""
        store = runtime.store
        last = await store.last_position()
        self.events.set(last)
        self.relay_lag.set(max(0, last - await store.checkpoint("relay")))
        views = runtime.views
        for projection, runner in zip(views.projections, views.runners, strict=True):
            self.projection_lag.labels(projection.name).set(await runner.lag())
        stats = ingest_stats(runtime)
        self.report_lag.set(stats.lag_seconds)
        for outcome in ("received", "recorded", "duplicates", "ignored"):
            self.reports.labels(outcome).set(getattr(stats, outcome))
        for state in get_args(TicketState):
            self.tickets.labels(state).set(await store.count("tickets", {"state": state}))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts every HTTP request by its route template (never the raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)

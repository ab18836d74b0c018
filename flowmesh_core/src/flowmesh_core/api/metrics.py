"""Prometheus metrics of one API app: its requests, and the fabric's counters at scrape time.

Each app owns a ``CollectorRegistry`` (never the process-global one), so several apps in
one process (tests, an embedded server beside a client) keep separate series.

Request metrics are labelled by method, route *template* (``/v1/workflows/{workflow_id}``)
and status; a path that matches no route counts as ``unmatched``, so a scanner cannot
create one series per path it tries. The fabric's figures (requested, executed, cache
hits...) come from ``ControlPlane.stats`` when scraped, totalled over every tenant, and
only for a scraper that sends an admin token: without one, the answer holds the request
metrics alone (no tenant count, no totals).

This module must never put a tenant's name, token or workflow id into a label.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowmesh_core.models.api import StatsReport

__all__ = ["ApiMetrics", "MetricsMiddleware"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# (metric name, help, StatsReport field); counters get Prometheus' ``_total`` suffix.
_FABRIC_COUNTERS = (
    ("flowmesh_items_requested", "Items requested by all tenants.", "requested"),
    ("flowmesh_items_executed", "Items executed by workers.", "executed"),
    ("flowmesh_items_failed", "Items that failed for good.", "failed"),
    ("flowmesh_cache_hits", "Requested items answered by the action cache.", "cache_hits"),
    ("flowmesh_joins", "Requested items joined to work already in flight.", "joins"),
    ("flowmesh_batches", "Batches executed.", "batches"),
    ("flowmesh_worker_seconds", "Worker time spent executing batches.", "worker_seconds"),
    ("flowmesh_cost_usd", "Cost of executed batches, in US dollars.", "cost_usd"),
    ("flowmesh_energy_wh", "Energy of executed batches, in watt-hours.", "energy_wh"),
)


class _FabricCollector(Collector):
    """Yields the figures of the last report handed to it (set just before each scrape)."""

    def __init__(self) -> None:
        self.report: StatsReport | None = None
        self.shown = False

    def describe(self) -> Iterable[Metric]:
        return []  # the families depend on the report; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        if not self.shown:
            return
        up = GaugeMetricFamily(
            "flowmesh_stats_up", "1 if the fabric's counters could be read from the store."
        )
        up.add_metric([], 0.0 if self.report is None else 1.0)
        yield up
        if self.report is None:
            return
        for name, text, field in _FABRIC_COUNTERS:
            yield CounterMetricFamily(name, text, value=float(getattr(self.report, field)))
        yield GaugeMetricFamily(
            "flowmesh_mean_batch_size",
            "Mean items per executed batch.",
            value=self.report.mean_batch_size,
        )
        yield GaugeMetricFamily(
            "flowmesh_tenants", "Registered tenants.", value=len(self.report.tenants)
        )


class ApiMetrics:
    """One app's registry: request counts and latency, plus the fabric's counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "flowmesh_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "flowmesh_http_request_duration_seconds",
            "Time to answer an HTTP request (long-poll waits included), by route template.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._fabric = _FabricCollector()
        self.registry.register(self._fabric)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        method = method if method in _METHODS else "OTHER"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self, report: StatsReport | None, *, fabric: bool = True) -> bytes:
        """The exposition text, with the fabric's figures from ``report`` (None: unreadable)
        when ``fabric``; without them (request counts and latency only) otherwise."""
        self._fabric.report = report
        self._fabric.shown = fabric
        try:
            return generate_latest(self.registry)
        finally:
            self._fabric.report = None
            self._fabric.shown = False


class MetricsMiddleware:
    """Times and counts every HTTP request by the route template it matched."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            self.metrics.observe(str(scope.get("method", "")), route, status, elapsed)

"""What ocireg counts, for Prometheus: requests, bytes, uploads, pushes, pulls, database work.

Every metric lives in the `CollectorRegistry` given to `RegistryMetrics`, so
a test (or a second site in one process) gets its own, and nothing here is a
module global. Label values are bounded: routes are Klein's route templates,
never raw paths, and repositories past a cap are counted as "other".
"""

from __future__ import annotations

import platform
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ocireg import version
from ocireg.api.observe import RequestRecord
from ocireg.digest import is_digest
from ocireg.interfaces import IMetadataStore, ITransaction

T = TypeVar("T")

#: The content type of the Prometheus text format that `generate_latest` writes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: The label value for repositories past the cap.
OTHER = "other"

#: Methods counted by name; a client can send any token, so the rest are "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_MANIFEST_ROUTE = "/v2/<path:name>/manifests/<reference>"
_BLOB_ROUTE = "/v2/<path:name>/blobs/<digest>"

#: Request durations: a manifest or a HEAD takes milliseconds, a layer minutes.
_DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
)


class BoundedLabel:
    """Passes the first `cap` distinct values through, and folds every later one into OTHER."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._cap:
            return OTHER
        self._seen.add(value)
        return value


class _Labelled:
    """`metric.labels(*values)`, remembered.

    prometheus_client checks and locks at each `labels` call, which showed in
    profiles of the per-request observers. Label values are bounded, so the
    memory is too.
    """

    def __init__(self, metric: Counter | Histogram) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Counter | Histogram] = {}

    def __call__(self, *values: str) -> Counter | Histogram:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


class _CallbackCollector(Collector):
    """Figures read at scrape time from `read`, which gives (name, help, value) triples.

    A name ending in `_total` is a count since start (a counter), as
    Prometheus' naming rules have it; any other name is a gauge.
    """

    def __init__(self, read: Callable[[], Iterable[tuple[str, str, float]]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        for name, documentation, value in self._read():
            if name.endswith("_total"):
                yield CounterMetricFamily(name, documentation, value=value)
            else:
                yield GaugeMetricFamily(name, documentation, value=value)


class RegistryMetrics:
    """The metrics of one registry, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry, repository_cap: int = 100) -> None:
        # A `_created` series per counter and histogram child (about a hundred) says
        # when the process started counting, which process_start_time_seconds says once.
        # The switch is prometheus_client's own, for the whole process.
        disable_created_metrics()
        self.registry = registry
        self._repository = BoundedLabel(repository_cap)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        Info("ocireg_build", "The ocireg that runs, and what it runs on.",
             registry=registry).info({
                 "version": version(),
                 "python": platform.python_version(),
                 "twisted": _twisted_version(),
             })
        self.requests = Counter(
            "ocireg_http_requests", "HTTP requests answered, by route template, method, status.",
            ["route", "method", "status"], registry=registry,
        )
        self.cut_off = Counter(
            "ocireg_http_requests_cut_off",
            "HTTP requests whose connection was lost before the response was complete.",
            ["route", "method"], registry=registry,
        )
        self.duration = Histogram(
            "ocireg_http_request_duration_seconds",
            "Time from a request's first line to the end of its response.",
            ["route", "method"], buckets=_DURATION_BUCKETS, registry=registry,
        )
        self.received = Counter(
            "ocireg_http_received_bytes", "Request body bytes received.", registry=registry
        )
        self.sent = Counter(
            "ocireg_http_sent_bytes", "Response body bytes sent.", registry=registry
        )
        self.uploads = Gauge(
            "ocireg_uploads_in_progress", "Blob upload bodies being received right now.",
            registry=registry,
        )
        self.pushes = Counter(
            "ocireg_pushes",
            "Manifests pushed by tag (each may make a new repository version), by repository.",
            ["repository"], registry=registry,
        )
        self.pulls = Counter(
            "ocireg_pulls", "Manifests served by GET, by repository.", ["repository"],
            registry=registry,
        )
        self.blob_downloads = Counter(
            "ocireg_blob_downloads", "Blobs served by GET, by repository.", ["repository"],
            registry=registry,
        )
        self.transactions = Counter(
            "ocireg_db_transactions", "Metadata store transactions, by outcome.", ["outcome"],
            registry=registry,
        )
        self.transaction_duration = Histogram(
            "ocireg_db_transaction_duration_seconds",
            "Time from asking for a metadata store transaction to its commit or rollback, "
            "waiting for the store included.",
            registry=registry,
        )
        self.transactions_in_progress = Gauge(
            "ocireg_db_transactions_in_progress",
            "Metadata store transactions asked for and not yet finished (waiting included).",
            registry=registry,
        )
        self._requests = _Labelled(self.requests)
        self._cut_off = _Labelled(self.cut_off)
        self._duration = _Labelled(self.duration)
        self._pushes = _Labelled(self.pushes)
        self._pulls = _Labelled(self.pulls)
        self._blob_downloads = _Labelled(self.blob_downloads)

    def add_collector(self, read: Callable[[], Iterable[tuple[str, str, float]]]) -> None:
        """Gauges whose values `read` gives at each scrape; `read` must be cheap and not block."""
        self.registry.register(_CallbackCollector(read))

    def upload_started(self) -> None:
        self.uploads.inc()

    def request_done(self, record: RequestRecord) -> None:
        route = record.route or "unmatched"
        method = record.method if record.method in _METHODS else OTHER
        if record.upload:
            self.uploads.dec()
        self.received.inc(record.received)
        self.sent.inc(record.sent)
        self._duration(route, method).observe(record.duration)
        if not record.completed:
            self._cut_off(route, method).inc()
            return
        self._requests(route, method, str(record.status)).inc()
        if record.repository is None or record.status >= 300:
            return
        if route == _MANIFEST_ROUTE:
            if method == "PUT" and record.reference and not is_digest(record.reference):
                self._pushes(self._repository(record.repository)).inc()
            elif method == "GET":
                self._pulls(self._repository(record.repository)).inc()
        elif route == _BLOB_ROUTE and method == "GET":
            self._blob_downloads(self._repository(record.repository)).inc()

    def render(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)


def _twisted_version() -> str:
    from twisted import copyright

    return copyright.version


@implementer(IMetadataStore)
class MeasuredMetadataStore:
    """`store`, with its transactions counted and timed in `metrics`.

    It wraps whichever backend is configured, so the figures mean the same
    for SQLite and PostgreSQL: how many transactions wait or run, how long
    they take (the wait for the store included), how many roll back.
    """

    def __init__(self, store: IMetadataStore, metrics: RegistryMetrics, clock: IReactorTime):
        self._store = store
        self._metrics = metrics
        self._clock = clock

    def transact(
        self, interaction: Callable[[ITransaction], Awaitable[T]], readonly: bool = False
    ) -> Deferred:
        return Deferred.fromCoroutine(self._transact(interaction, readonly))

    async def _transact(
        self, interaction: Callable[[ITransaction], Awaitable[T]], readonly: bool
    ) -> T:
        started = self._clock.seconds()
        self._metrics.transactions_in_progress.inc()
        outcome = "rolled_back"
        try:
            result = await self._store.transact(interaction, readonly=readonly)
            outcome = "committed"
            return result
        finally:
            self._metrics.transactions_in_progress.dec()
            self._metrics.transactions.labels(outcome).inc()
            self._metrics.transaction_duration.observe(self._clock.seconds() - started)

    def on_change(self, callback: Callable[[], object]) -> None:
        self._store.on_change(callback)

    def on_listening_lost(self, callback: Callable[[], object]) -> None:
        self._store.on_listening_lost(callback)

    def catch_up(self) -> bool:
        return self._store.catch_up()

    def close(self) -> Deferred:
        return self._store.close()

"""`/metrics`: the registry's metrics in the Prometheus text format."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ocireg.metrics import CONTENT_TYPE, RegistryMetrics

_log = Logger()


class MetricsAPI:
    """Serves `metrics` to a Prometheus scraper.

    Rendering runs on the reactor thread: it only reads counters in memory
    (collectors added to the metrics must not do I/O), a few milliseconds
    for the bounded number of series ocireg keeps. What needs I/O to be
    current (the free disk space) is measured by `refresh` first.
    """

    app = Klein()

    def __init__(
        self, metrics: RegistryMetrics, refresh: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        self._metrics = metrics
        self._refresh = refresh

    def resource(self):
        return self.app.resource()

    @app.route("/metrics", methods=["GET"])
    async def metrics(self, request: IRequest) -> bytes:
        if self._refresh is not None:
            try:
                await self._refresh()
            except Exception as e:
                # The rest is still worth a scrape; /readyz says what is wrong.
                _log.warn("measuring for /metrics failed: {error}", error=str(e))
        body = self._metrics.render()
        request.setHeader("Content-Type", CONTENT_TYPE)
        request.setHeader("Content-Length", str(len(body)))
        request.setHeader("Cache-Control", "no-store")
        return body

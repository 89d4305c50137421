"""`/metrics`: the registry's metrics in the Prometheus text format."""

from __future__ import annotations

from klein import Klein
from twisted.web.iweb import IRequest

from ocireg.metrics import CONTENT_TYPE, RegistryMetrics


class MetricsAPI:
    """Serves `metrics` to a Prometheus scraper.

    Rendering runs on the reactor thread: it only reads counters in memory
    (collectors added to the metrics must not do I/O), a few milliseconds
    for the bounded number of series ocireg keeps.
    """

    app = Klein()

    def __init__(self, metrics: RegistryMetrics) -> None:
        self._metrics = metrics

    def resource(self):
        return self.app.resource()

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: IRequest) -> bytes:
        body = self._metrics.render()
        request.setHeader("Content-Type", CONTENT_TYPE)
        request.setHeader("Content-Length", str(len(body)))
        request.setHeader("Cache-Control", "no-store")
        return body

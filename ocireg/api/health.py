"""Health and readiness: `/healthz` (the process serves) and `/readyz` (its stores answer).

A load balancer or an orchestrator polls these. `/healthz` only proves the
reactor turns; `/readyz` runs every probe (a trivial metadata transaction, a
look at the blob store's directory) with a deadline, and is 503 while any
fails or the daemon is stopping. Both answer JSON saying why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from klein import Klein
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from ocireg.api.render import json_response

_log = Logger()

Probe = Callable[[], Awaitable[object]]

#: How long a probe may take before the store counts as not answering.
PROBE_TIMEOUT = 5.0


def _answer(request: IRequest, document: object, status: int) -> bytes:
    body = json_response(request, document, status)
    # A cached answer would tell of another moment.
    request.setHeader("Cache-Control", "no-store")
    return body


class HealthAPI:
    """`/healthz` and `/readyz`, running `probes` against the stores.

    `stopping` says whether the daemon is on its way down (then it is not ready).
    """

    app = Klein()

    def __init__(
        self,
        probes: Mapping[str, Probe],
        clock: IReactorTime,
        stopping: Callable[[], bool] = lambda: False,
        timeout: float = PROBE_TIMEOUT,
    ) -> None:
        self._probes = dict(probes)
        self._clock = clock
        self._stopping = stopping
        self._timeout = timeout
        #: Probes still waiting for an answer.
        self._running: set[str] = set()

    def resource(self):
        return self.app.resource()

    @app.route("/healthz", methods=["GET", "HEAD"])
    def healthz(self, request: IRequest) -> bytes:
        return _answer(request, {"status": "ok"}, 200)

    @app.route("/readyz", methods=["GET", "HEAD"])
    async def readyz(self, request: IRequest) -> bytes:
        checks = await self.check()
        ready = all(result == "ok" for result in checks.values())
        if self._stopping():
            checks["shutdown"] = "stopping"
            ready = False
        return _answer(
            request, {"status": "ok" if ready else "unavailable", "checks": checks},
            200 if ready else 503,
        )

    async def check(self) -> dict[str, str]:
        """Each probe's name, and "ok" or why it failed."""
        names = list(self._probes)
        results = await DeferredList(
            [ensureDeferred(self._run(name)) for name in names], consumeErrors=True
        )
        return {name: outcome for name, (_, outcome) in zip(names, results, strict=True)}

    async def _run(self, name: str) -> str:
        # A probe that overran is left to finish rather than cancelled: cancelling
        # a store's operation half-way could leave it in a worse state than slow.
        # While it runs, the next check reports it instead of piling another on.
        if name in self._running:
            return f"no answer within {self._timeout:g} s (an earlier check is still waiting)"
        probe: Deferred = ensureDeferred(_awaited(self._probes[name]))
        self._running.add(name)
        probe.addBoth(_passthrough(lambda: self._running.discard(name)))
        outcome: Deferred = Deferred()
        timer = self._clock.callLater(
            self._timeout,
            lambda: outcome.called or outcome.callback(f"no answer within {self._timeout:g} s"),
        )

        def answered(result: object) -> None:
            if timer.active():
                timer.cancel()
            if not outcome.called:
                outcome.callback("ok" if not isinstance(result, Failure) else _reason(result))

        probe.addBoth(answered)
        reason = await outcome
        if reason != "ok":
            _log.warn("readiness probe {probe} failed: {reason}", probe=name, reason=reason)
        return reason


async def _awaited(probe: Probe) -> object:
    return await probe()


def _passthrough(f: Callable[[], object]) -> Callable[[object], object]:
    def call(result: object) -> object:
        f()
        return result

    return call


def _reason(failure: Failure) -> str:
    return f"{failure.type.__name__}: {failure.value}"[:300]

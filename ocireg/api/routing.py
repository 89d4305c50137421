"""Route matching that remembers its answers, for the hot `/v2/` routes.

Each request is matched against the routes twice: once by Klein to pick the
handler, once by the request observers to label the request with its route
template (ocireg.api.observe). werkzeug's matcher walks its state machine
each time; profiles of manifest GETs under load put the two walks at about a
tenth of the reactor's time. Clients ask for the same few paths over and over
(a pull's manifests and blobs), so remembering recent matches pays.

A match depends only on the path, the method and the (fixed) rules, so a
remembered answer is the answer. Only matches are remembered: a path that
matches nothing (404, 405, a redirect) goes through werkzeug every time, so
hostile paths cannot fill the memory with failures, and exceptions are not
reused.

`BodyTable` is the other use of an app's routes: what each route does with
its request body, declared beside the route and found, as soon as the
headers are in, by the same URL map Klein routes with (whose match the
remembering matcher then hands Klein for nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Generic, TypeVar

from klein import Klein
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter, RequestRedirect, Rule
from werkzeug.routing.matcher import StateMachineMatcher

#: Matches remembered; when full, the memory starts again from empty.
DEFAULT_SIZE = 4096


class RememberingMatcher(StateMachineMatcher):
    """werkzeug's state-machine matcher, with the last `size` matches remembered."""

    def __init__(self, merge_slashes: bool, size: int = DEFAULT_SIZE) -> None:
        super().__init__(merge_slashes)
        self._size = size
        self._matches: dict[tuple[str, str, str, bool], tuple[Rule, dict[str, Any]]] = {}

    def add(self, rule: Rule) -> None:
        self._matches.clear()
        super().add(rule)

    def update(self) -> None:
        self._matches.clear()
        super().update()

    def match(
        self, domain: str, path: str, method: str, websocket: bool
    ) -> tuple[Rule, MutableMapping[str, Any]]:
        key = (domain, path, method, websocket)
        found = self._matches.get(key)
        if found is None:
            rule, values = super().match(domain, path, method, websocket)
            if len(self._matches) >= self._size:
                self._matches.clear()
            found = self._matches[key] = (rule, dict(values))
        rule, values = found
        # A copy: whoever gets the values may change them.
        return rule, dict(values)


def remembering_klein(size: int = DEFAULT_SIZE) -> Klein:
    """A Klein app whose route matching remembers recent matches.

    Call it before any route is added: the matcher holds the routes.
    """
    app = Klein()
    # Klein builds its werkzeug Map itself and offers no way to pass a
    # matcher; tests/test_routing.py guards that this one is the one used.
    app.url_map._matcher = RememberingMatcher(app.url_map.merge_slashes, size)
    return app


Sink = TypeVar("Sink")
Handler = TypeVar("Handler", bound=Callable[..., Any])


class BodyTable(Generic[Sink]):
    """What each route of `app` does with its request body, for the paths under `under`.

    A route declares its sink with `@table.sink(factory)` beneath its
    `@app.route(...)`; routes that declare none, and paths under `under` that
    match no route, take `otherwise`. Routes are told apart by their Klein
    endpoint, the handler's name.
    """

    def __init__(self, app: Klein, under: str, otherwise: Sink) -> None:
        self._app = app
        self.under = under
        self._otherwise = otherwise
        self._sinks: dict[str, Sink] = {}
        #: The methods of the routes that declare a sink, and the map bound for matching;
        #: made at the first lookup, once every route is in the map.
        self._methods: frozenset[str] | None = None
        self._adapter: MapAdapter | None = None

    def sink(self, factory: Sink) -> Callable[[Handler], Handler]:
        """Declare `factory` the sink of the decorated route's request bodies."""

        def declare(handler: Handler) -> Handler:
            self._sinks[handler.__name__] = factory
            self._methods = self._adapter = None
            return handler

        return declare

    def declared(self) -> Mapping[str, Sink]:
        """The declared sinks by endpoint."""
        return dict(self._sinks)

    def find(self, method: str, path: str) -> tuple[Sink, Mapping[str, Any]]:
        """The sink of a `method` request for `path` (a decoded path under `under`), and the
        values its route takes from the path."""
        if self._methods is None or self._adapter is None:
            self._methods = frozenset(
                m for rule in self._app.url_map.iter_rules()
                if rule.endpoint in self._sinks for m in rule.methods or ()
            )
            # As Klein binds it, but for the host, which no route looks at.
            self._adapter = self._app.url_map.bind("")
        if method not in self._methods:
            # Most requests (pulls): no route of this method keeps a body.
            return self._otherwise, {}
        try:
            rule, values = self._adapter.match(path, method, return_rule=True)
        except (HTTPException, RequestRedirect):
            return self._otherwise, {}
        return self._sinks.get(rule.endpoint, self._otherwise), values

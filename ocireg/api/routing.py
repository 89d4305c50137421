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
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from klein import Klein
from werkzeug.routing import Rule
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

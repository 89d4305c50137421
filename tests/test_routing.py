"""Route matching that remembers its answers gives werkzeug's answers, every time."""

from __future__ import annotations

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from ocireg.api.registry import RegistryAPI
from ocireg.api.routing import RememberingMatcher, remembering_klein

RULES = [
    ("/v2/<path:name>/manifests/<reference>", ["GET", "HEAD", "PUT"]),
    ("/v2/<path:name>/blobs/<digest>", ["GET", "HEAD"]),
    ("/v2/<path:name>/blobs/uploads/", ["POST"]),
    ("/v2/", ["GET"]),
]

PATHS = [
    ("/v2/team/app/manifests/latest", "GET"),
    ("/v2/team/app/manifests/latest", "PUT"),
    ("/v2/a/b/c/blobs/sha256:abc", "HEAD"),
    ("/v2/a/b/c/blobs/uploads/", "POST"),
    ("/v2/", "GET"),
    ("/v2/team/app/manifests/latest", "DELETE"),
    ("/v2/nothing/here", "GET"),
    ("/v2/x/manifests/", "GET"),
]


def _answer(adapter, path: str, method: str):
    try:
        rule, values = adapter.match(path, method, return_rule=True)
    except (NotFound, MethodNotAllowed) as e:
        return type(e).__name__
    return rule.rule, dict(values)


def _map(remembering: bool, size: int = 4096) -> Map:
    routes = Map([Rule(path, methods=methods) for path, methods in RULES],
                 merge_slashes=False, strict_slashes=False)
    if remembering:
        fresh = Map(merge_slashes=False, strict_slashes=False)
        fresh._matcher = RememberingMatcher(False, size)
        for rule in routes.iter_rules():
            fresh.add(rule.empty())
        routes = fresh
    return routes


@pytest.mark.parametrize("size", [4096, 2])
def test_remembered_matches_are_werkzeugs_matches_however_often_asked(size):
    plain = _map(False).bind("registry")
    remembering = _map(True, size).bind("registry")
    for _ in range(3):
        for path, method in PATHS:
            assert _answer(remembering, path, method) == _answer(plain, path, method)


def test_a_caller_changing_its_values_does_not_change_the_next_answer():
    adapter = _map(True).bind("registry")
    _, values = adapter.match("/v2/team/app/manifests/latest", "GET", return_rule=True)
    values["name"] = "someone/else"
    _, again = adapter.match("/v2/team/app/manifests/latest", "GET", return_rule=True)
    assert again["name"] == "team/app"


def test_the_registry_api_routes_through_a_remembering_matcher():
    # Klein builds its own werkzeug Map; remembering_klein swaps the matcher
    # through a private attribute, which a Klein upgrade could rename.
    assert isinstance(RegistryAPI.app.url_map._matcher, RememberingMatcher)
    app = remembering_klein()

    @app.route("/v2/<path:name>/tags/list")
    def tags(request, name):  # pragma: no cover - only matched, never called
        return name

    adapter = app.url_map.bind("registry")
    rule, values = adapter.match("/v2/a/b/tags/list", "GET", return_rule=True)
    assert (rule.rule, values) == ("/v2/<path:name>/tags/list", {"name": "a/b"})

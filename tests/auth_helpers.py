"""Helpers for the authentication tests: users, a registry with auth on, credentials."""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt
import treq
from twisted.internet import reactor
from twisted.web.client import Agent

#: Users of the test registries, and their passwords.
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "root": "root-pw", "carol": "carol-pw"}

#: alice pushes team/**, bob and the developers pull it, root is admin,
#: anyone pulls public/**.
RULES = [
    {"users": ["alice"], "repositories": ["team/**", "secret/**"], "actions": ["pull", "push"]},
    {"groups": ["developers"], "repositories": ["team/**"], "actions": ["pull"]},
    {"users": ["root"], "repositories": ["**"], "actions": ["admin"]},
    {"anonymous": True, "repositories": ["public/**"], "actions": ["pull"]},
]
GROUPS = {"developers": ["bob"]}


def htpasswd_line(user: str, password: str) -> str:
    # Cost 4: the cheapest bcrypt, so that tests stay fast.
    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}\n"


def write_htpasswd(path: Path, users: dict[str, str] = PASSWORDS) -> Path:
    path.write_text("".join(htpasswd_line(u, p) for u, p in users.items()))
    return path


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class As:
    """`server`, seen by one caller: every request carries `authorization` (None: anonymous).

    `source`: the loopback address the caller connects from (127.0.0.2, ...),
    to be another client address than the other callers'.
    """

    def __init__(self, server, authorization: str | None, source: str | None = None) -> None:
        self._server = server
        self.authorization = authorization
        self.url = server.url
        self.registry = server.registry
        self._source = source

    def request(self, method: str, path: str, **kwargs):
        headers = dict(kwargs.pop("headers", None) or {})
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        kwargs.setdefault("timeout", 30)
        if self._source is not None:
            kwargs["agent"] = Agent(reactor, bindAddress=(self._source, 0))
        else:
            kwargs["persistent"] = False
        return treq.request(method, self.url + path, headers=headers, **kwargs)


def user(server, name: str, source: str | None = None) -> As:
    return As(server, basic(name, PASSWORDS[name]), source)


def anonymous(server, source: str | None = None) -> As:
    return As(server, None, source)


def bearer(server, token: str) -> As:
    return As(server, f"Bearer {token}")

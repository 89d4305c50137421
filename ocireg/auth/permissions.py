"""Permission rules: which users and groups may do which actions on which repositories.

A rule names users (or `*` for every authenticated user), groups, or the
anonymous caller, a list of repository name patterns and a list of actions.
Patterns are globs over repository names: `*` matches within one path
segment, `**` across segments (`team/**` is everything under `team/`), `?`
one character of a segment. A caller's actions on a repository are the union
of what every rule that applies to them grants; nothing is denied explicitly.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

import attrs

PULL, PUSH, DELETE, ADMIN = "pull", "push", "delete", "admin"
ACTIONS = (PULL, PUSH, DELETE, ADMIN)

#: What each action brings with it: a client that pushes HEADs blobs and
#: GETs manifests first, so push without pull would be of no use.
_IMPLIED = {
    PULL: frozenset({PULL}),
    PUSH: frozenset({PULL, PUSH}),
    DELETE: frozenset({PULL, DELETE}),
    ADMIN: frozenset({PULL, PUSH, DELETE, ADMIN}),
}

#: The user name rules use for every authenticated user.
EVERY_USER = "*"


class RuleError(ValueError):
    """A rule in the configuration is malformed; the message says how."""


@functools.lru_cache(maxsize=1024)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """The regular expression of a repository name glob (`*`, `**`, `?`)."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def implied(actions: Iterable[str]) -> frozenset[str]:
    """`actions` with what each brings with it (push brings pull, admin brings all)."""
    result: frozenset[str] = frozenset()
    for action in actions:
        result |= _IMPLIED[action]
    return result


@attrs.frozen
class Rule:
    """Grants `actions` on repositories matching `repositories` to whom it names."""

    repositories: tuple[str, ...]
    actions: tuple[str, ...]
    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    anonymous: bool = False

    @classmethod
    def from_table(cls, table: object, where: str = "rule") -> Rule:
        """A rule from its TOML table: repositories, actions, and users/groups/anonymous."""
        if not isinstance(table, Mapping):
            raise RuleError(f"{where} must be a table with repositories and actions")
        unknown = sorted(set(table) - {"users", "groups", "anonymous", "repositories", "actions"})
        if unknown:
            raise RuleError(f"{where} has an unknown key {unknown[0]!r}")
        users = _names(table, "users", where)
        groups = _names(table, "groups", where)
        anonymous = table.get("anonymous", False)
        if not isinstance(anonymous, bool):
            raise RuleError(f"{where}: anonymous must be true or false")
        repositories = _names(table, "repositories", where)
        actions = _names(table, "actions", where)
        if not repositories:
            raise RuleError(f"{where} needs repositories (name patterns such as \"team/**\")")
        if not actions:
            raise RuleError(f"{where} needs actions ({', '.join(ACTIONS)})")
        bad = [a for a in actions if a not in ACTIONS]
        if bad:
            raise RuleError(f"{where}: unknown action {bad[0]!r} (known: {', '.join(ACTIONS)})")
        if not (users or groups or anonymous):
            raise RuleError(f"{where} names nobody: give users, groups or anonymous = true")
        if anonymous and set(actions) - {PULL}:
            # An anonymous push could not be traced to anyone.
            raise RuleError(f"{where}: anonymous callers may only be granted pull")
        return cls(repositories, actions, users, groups, anonymous)

    def applies_to(self, user: str | None, groups: frozenset[str]) -> bool:
        # What an anonymous caller may do, a caller who logged in may do too.
        if user is None or self.anonymous:
            return self.anonymous
        return user in self.users or EVERY_USER in self.users or bool(groups & set(self.groups))

    def matches(self, repository: str) -> bool:
        return any(glob_regex(p).match(repository) for p in self.repositories)

    def to_table(self) -> dict[str, object]:
        table: dict[str, object] = {"repositories": list(self.repositories),
                                    "actions": list(self.actions)}
        if self.users:
            table["users"] = list(self.users)
        if self.groups:
            table["groups"] = list(self.groups)
        if self.anonymous:
            table["anonymous"] = True
        return table


def _names(table: Mapping, key: str, where: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise RuleError(f"{where}: {key} must be a list of non-empty strings")
    return tuple(value)


@attrs.frozen
class Permissions:
    """The rules in force, the groups, and whether each user owns `<user>/**`."""

    rules: tuple[Rule, ...] = ()
    #: Group name -> its members.
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()
    own_namespace: bool = True

    def groups_of(self, user: str) -> frozenset[str]:
        return frozenset(name for name, members in self.groups if user in members)

    def actions(self, user: str | None, repository: str) -> frozenset[str]:
        """What `user` (None: an anonymous caller) may do on `repository`."""
        granted: set[str] = set()
        groups = self.groups_of(user) if user is not None else frozenset()
        for rule in self.rules:
            if rule.applies_to(user, groups) and rule.matches(repository):
                granted |= implied(rule.actions)
        if self.own_namespace and user is not None and repository.startswith(user + "/"):
            granted |= implied((PUSH,))
        return frozenset(granted)

    def allows(self, user: str | None, repository: str, action: str) -> bool:
        return action in self.actions(user, repository)

    def is_admin(self, user: str | None) -> bool:
        """Does `user` have admin on every repository (a rule granting admin on `**`)?"""
        if user is None:
            return False
        groups = self.groups_of(user)
        return any(
            ADMIN in rule.actions and "**" in rule.repositories and rule.applies_to(user, groups)
            for rule in self.rules
        )

"""The checks and conversions of each setting's value, and the error they raise.

Each message names the setting, so that a refused start-up says what to fix.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import attrs

from ocireg.auth.permissions import Rule, RuleError
from ocireg.storage.space import Reserve


class ConfigError(Exception):
    """A setting is missing, unknown or has a bad value; the message names it."""


def listen_endpoints(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError("listen must be an endpoint description or a list of them")
    return tuple(value)


def database_url(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value and not value.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "database must be empty (SQLite in data_dir) or a postgresql://user@host:port/name "
            f"URL, not {value[:60]!r}"
        )


def positive(name: str):
    def check(instance: object, attribute: attrs.Attribute, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"setting {name!r} must be a whole number of at least 1")

    return check


def endpoints(name: str):
    def convert(value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"setting {name!r} must be an endpoint description or a list of them")
        return tuple(value)

    return convert


def one_of(name: str, choices: tuple[str, ...]):
    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if value not in choices:
            raise ConfigError(
                f"setting {name!r} must be one of {', '.join(choices)}, not {value!r}"
            )

    return check


def seconds(name: str):
    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e6:
            raise ConfigError(f"setting {name!r} must be a number of seconds (0 or more)")

    return check


def whole_number(name: str, minimum: int):
    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"setting {name!r} must be a whole number of at least {minimum}")

    return check


def flag(name: str):
    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if not isinstance(value, bool):
            raise ConfigError(f"setting {name!r} must be true or false")

    return check


def text(name: str):
    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if not isinstance(value, str):
            raise ConfigError(f"setting {name!r} must be a string")

    return check


def realm_url(instance: object, attribute: attrs.Attribute, value: object) -> None:
    if not isinstance(value, str):
        raise ConfigError("setting 'auth_realm' must be a string")
    if not value:
        return
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError when out of range)
    except ValueError:
        parts = urlsplit("")
    # It goes into a quoted header parameter: no quotes, spaces or control characters.
    if (parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment
            or any(c in value for c in '"\\') or any(c.isspace() or ord(c) < 32 for c in value)
            or len(value) > 2048):
        raise ConfigError(
            f"setting 'auth_realm' must be the token endpoint's http:// or https:// URL, "
            f"such as https://registry.example/token, not {value[:100]!r}"
        )


def reserve_size(instance: object, attribute: attrs.Attribute, value: object) -> None:
    try:
        Reserve.parse(value)
    except ValueError as e:
        raise ConfigError(f"setting 'min_free_space' {e}") from None


def rules(value: object) -> tuple[Rule, ...]:
    if isinstance(value, tuple) and all(isinstance(r, Rule) for r in value):
        return value
    if not isinstance(value, list | tuple):
        raise ConfigError("setting 'auth_rules' must be a list of tables ([[auth_rules]])")
    try:
        return tuple(
            Rule.from_table(table, f"auth_rules[{i}]") for i, table in enumerate(value)
        )
    except RuleError as e:
        raise ConfigError(f"setting {e}") from None


def groups(value: object) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if isinstance(value, list | tuple) and all(
        isinstance(pair, list | tuple) and len(pair) == 2 for pair in value
    ):
        # As attrs.asdict gives it (a worker's settings): pairs of name and members.
        value = {name: list(members) for name, members in value}
    if not isinstance(value, dict) or not all(
        isinstance(members, list) and all(isinstance(m, str) for m in members)
        for members in value.values()
    ):
        raise ConfigError(
            "setting 'auth_groups' must be a table of group names to lists of users"
        )
    return tuple(sorted((name, tuple(members)) for name, members in value.items()))

"""Settings as the log shows them: credentials masked."""

from __future__ import annotations

import attrs

from ocireg.auth.permissions import Rule
from ocireg.config.settings import Config

#: Settings whose values are credentials, or may hold them.
_SECRET_WORDS = ("password", "secret", "token", "key")
#: Settings whose names have such a word but whose values are no secret (paths, names).
_NOT_SECRET = frozenset({
    "auth_token_service", "auth_token_path", "auth_token_key", "auth_token_algorithm",
    "auth_token_ttl", "auth_trusted_keys",
})


def masked(config: Config) -> dict[str, object]:
    """Every setting and its value, for the log: passwords in URLs and secret settings masked."""
    shown: dict[str, object] = {}
    for attribute in attrs.fields(Config):
        value = getattr(config, attribute.name)
        secret = attribute.name not in _NOT_SECRET
        if secret and any(word in attribute.name for word in _SECRET_WORDS) and value:
            value = "********"
        elif isinstance(value, str):
            value = _mask_url_password(value)
        elif isinstance(value, tuple):
            value = [_shown(v) for v in value]
        shown[attribute.name] = value
    return shown


def _shown(value: object) -> object:
    if isinstance(value, Rule):
        return value.to_table()
    if isinstance(value, tuple):
        return [_shown(v) for v in value]
    return _mask_url_password(value) if isinstance(value, str) else value


def _mask_url_password(value: str) -> str:
    scheme, found, rest = value.partition("://")
    if not found:
        return value
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return value
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:********@{host}"

"""ocireg's settings: defaults that run with no file, a TOML file, command-line overrides."""

from __future__ import annotations

import os
import tomllib
from typing import Any

import attrs


class ConfigError(Exception):
    """A setting is missing, unknown or has a bad value; the message names it."""


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError("listen must be an endpoint description or a list of them")
    return tuple(value)


def _database_url(instance: object, attribute: attrs.Attribute, value: str) -> None:
    if value and not value.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "database must be empty (SQLite in data_dir) or a postgresql://user@host:port/name "
            f"URL, not {value[:60]!r}"
        )


def _positive(name: str):
    def check(instance: object, attribute: attrs.Attribute, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"setting {name!r} must be a whole number of at least 1")

    return check


def _endpoints(name: str):
    def convert(value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"setting {name!r} must be an endpoint description or a list of them")
        return tuple(value)

    return convert


def _one_of(name: str, choices: tuple[str, ...]):
    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if value not in choices:
            raise ConfigError(
                f"setting {name!r} must be one of {', '.join(choices)}, not {value!r}"
            )

    return check


def _seconds(name: str):
    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e6:
            raise ConfigError(f"setting {name!r} must be a number of seconds (0 or more)")

    return check


def _whole_number(name: str, minimum: int):
    def check(instance: object, attribute: attrs.Attribute, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"setting {name!r} must be a whole number of at least {minimum}")

    return check


#: twisted.logger's level names, least severe first.
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
LOG_FORMATS = ("text", "json")


@attrs.frozen
class Config:
    """Every setting, with its default. `etc/ocireg.toml` documents each one."""

    #: Twisted endpoint descriptions to serve the API on.
    listen: tuple[str, ...] = attrs.field(default=("tcp:5000",), converter=_strings)
    #: Where blobs, uploads and the embedded metadata database live.
    data_dir: str = "./ocireg-data"
    #: The metadata database; empty means SQLite in the data directory.
    database: str = attrs.field(default="", validator=_database_url)
    #: Processes serving the API on the same sockets (more than 1 needs PostgreSQL).
    workers: int = attrs.field(default=1, validator=_positive("workers"))
    #: Connections each process keeps open to a PostgreSQL database.
    database_connections: int = attrs.field(default=4, validator=_positive("database_connections"))
    #: Endpoints serving only /healthz, /readyz and /metrics; with any, /metrics leaves `listen`.
    admin_listen: tuple[str, ...] = attrs.field(default=(), converter=_endpoints("admin_listen"))
    #: The least severe log events written; reloadable.
    log_level: str = attrs.field(default="info", validator=_one_of("log_level", LOG_LEVELS))
    #: text lines, or one JSON object per line.
    log_format: str = attrs.field(default="text", validator=_one_of("log_format", LOG_FORMATS))
    #: Seconds a stop lets requests in flight finish before cutting them off.
    shutdown_timeout: float = attrs.field(default=30, validator=_seconds("shutdown_timeout"))
    #: Repositories the push and pull metrics name one by one; the rest are "other".
    metrics_repositories: int = attrs.field(
        default=100, validator=_whole_number("metrics_repositories", 1)
    )

    def __attrs_post_init__(self) -> None:
        if self.workers > 1 and not self.database:
            raise ConfigError(
                f"workers = {self.workers} needs a PostgreSQL database: the embedded SQLite "
                "store serves one process"
            )

    @property
    def sqlite_path(self) -> str:
        return os.path.join(self.data_dir, "metadata.sqlite3")

    @classmethod
    def load(cls, path: str | None = None, **overrides: Any) -> Config:
        """Defaults, then the TOML file at `path`, then `overrides` that are not None."""
        settings: dict[str, Any] = {}
        if path is not None:
            try:
                with open(path, "rb") as f:
                    document = tomllib.load(f)
            except OSError as e:
                raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
            settings.update({key.replace("-", "_"): value for key, value in document.items()})
        settings.update({k: v for k, v in overrides.items() if v is not None})
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"unknown setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
        for name in ("data_dir", "database"):
            if name in settings and not isinstance(settings[name], str):
                raise ConfigError(f"setting {name!r} must be a string")
        for name in ("workers", "database_connections"):
            if isinstance(settings.get(name), str) and settings[name].isdigit():
                # From the command line every value is a string.
                settings[name] = int(settings[name])
        try:
            return cls(**settings)
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None


#: Settings whose values are credentials, or may hold them.
_SECRET_WORDS = ("password", "secret", "token", "key")


def masked(config: Config) -> dict[str, object]:
    """Every setting and its value, for the log: passwords in URLs and secret settings masked."""
    shown: dict[str, object] = {}
    for attribute in attrs.fields(Config):
        value = getattr(config, attribute.name)
        if any(word in attribute.name for word in _SECRET_WORDS) and value:
            value = "********"
        elif isinstance(value, str):
            value = _mask_url_password(value)
        elif isinstance(value, tuple):
            value = [_mask_url_password(v) if isinstance(v, str) else v for v in value]
        shown[attribute.name] = value
    return shown


def _mask_url_password(value: str) -> str:
    scheme, found, rest = value.partition("://")
    if not found:
        return value
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return value
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:********@{host}"

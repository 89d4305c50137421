"""ocireg's settings: defaults that run with no file, a TOML file, command-line overrides."""

from __future__ import annotations

import os
import tomllib
from typing import Any

import attrs

from ocireg.auth.permissions import Rule
from ocireg.config.checks import (
    ConfigError,
    database_url,
    endpoints,
    flag,
    groups,
    listen_endpoints,
    one_of,
    positive,
    realm_url,
    reserve_size,
    rules,
    seconds,
    text,
    whole_number,
)
from ocireg.storage.space import Reserve

#: First path segments the token endpoint cannot take: other apps serve them.
_TAKEN_PATHS = ("v2", "api", "healthz", "readyz", "metrics")
TOKEN_ALGORITHMS = ("ES256", "RS256")


DEFAULT_GRACE_PERIOD = 3600.0
DEFAULT_STAGING_TTL = 86400.0
DEFAULT_UPLOAD_TTL = 86400.0

#: twisted.logger's level names, least severe first.
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
LOG_FORMATS = ("text", "json")


@attrs.frozen
class Config:
    """Every setting, with its default. `etc/ocireg.toml` documents each one."""

    #: Twisted endpoint descriptions to serve the API on.
    listen: tuple[str, ...] = attrs.field(default=("tcp:5000",), converter=listen_endpoints)
    #: Where blobs, uploads and the embedded metadata database live.
    data_dir: str = "./ocireg-data"
    #: Space kept free in data_dir ("256MiB", "5%"): below it new uploads are
    #: refused, while reads, deletes and garbage collection go on.
    min_free_space: str | int = attrs.field(default="256MiB", validator=reserve_size)
    #: The metadata database; empty means SQLite in the data directory.
    database: str = attrs.field(default="", validator=database_url)
    #: Processes serving the API on the same sockets (more than 1 needs PostgreSQL).
    workers: int = attrs.field(default=1, validator=positive("workers"))
    #: Connections each process keeps open to a PostgreSQL database.
    database_connections: int = attrs.field(default=4, validator=positive("database_connections"))
    #: Seconds cached manifests and blob lookups are still served while PostgreSQL
    #: cannot be reached (counted from the moment changes stopped being heard); 0: never.
    stale_cache_max_age: float = attrs.field(
        default=300, validator=seconds("stale_cache_max_age")
    )
    #: Endpoints serving only /healthz, /readyz and /metrics; with any, /metrics leaves `listen`.
    admin_listen: tuple[str, ...] = attrs.field(default=(), converter=endpoints("admin_listen"))
    #: The least severe log events written; reloadable.
    log_level: str = attrs.field(default="info", validator=one_of("log_level", LOG_LEVELS))
    #: text lines, or one JSON object per line.
    log_format: str = attrs.field(default="text", validator=one_of("log_format", LOG_FORMATS))
    #: Seconds a stop lets requests in flight finish before cutting them off.
    shutdown_timeout: float = attrs.field(default=30, validator=seconds("shutdown_timeout"))
    #: Open connections each process serves on `listen`; more are refused with 503.
    max_connections: int = attrs.field(default=1024, validator=positive("max_connections"))
    #: Of those, from one client address.
    max_client_connections: int = attrs.field(
        default=128, validator=positive("max_client_connections")
    )
    #: Seconds a request's line and headers may take from their first byte; 0: no limit.
    header_timeout: float = attrs.field(default=30, validator=seconds("header_timeout"))
    #: Bytes of request bodies (manifests, forms) one client address may have kept at once.
    max_client_buffer: int = attrs.field(
        default=16 * 1024 * 1024, validator=whole_number("max_client_buffer", 64 * 1024)
    )
    #: Repositories the push and pull metrics name one by one; the rest are "other".
    metrics_repositories: int = attrs.field(
        default=100, validator=whole_number("metrics_repositories", 1)
    )
    #: Seconds between housekeeping runs (staging expiry, upload purging,
    #: garbage collection); 0 turns the timer off (collect on demand only).
    gc_interval: float = attrs.field(default=3600, validator=seconds("gc_interval"))
    #: Content younger than this many seconds is never collected.
    gc_grace_period: float = attrs.field(
        default=DEFAULT_GRACE_PERIOD, validator=seconds("gc_grace_period")
    )
    #: Seconds staged content waits for a tag before it is promoted or discarded.
    staging_ttl: float = attrs.field(default=DEFAULT_STAGING_TTL, validator=seconds("staging_ttl"))
    #: Seconds an upload may sit unwritten before it is cancelled and its bytes removed.
    upload_ttl: float = attrs.field(default=DEFAULT_UPLOAD_TTL, validator=seconds("upload_ttl"))
    #: Upload sessions one user (or, anonymous, one address) may have open at once.
    max_uploads_per_client: int = attrs.field(
        default=256, validator=whole_number("max_uploads_per_client", 1)
    )
    #: An htpasswd file of bcrypt hashes; empty (and no auth_trusted_keys): everything open.
    auth_htpasswd: str = attrs.field(default="", validator=text("auth_htpasswd"))
    #: Permission rules ([[auth_rules]] tables); reloadable.
    auth_rules: tuple[Rule, ...] = attrs.field(default=(), converter=rules)
    #: Groups the rules can name: group -> users; reloadable.
    auth_groups: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(
        default=(), converter=groups
    )
    #: Every user may pull and push repositories under `<user>/`; reloadable.
    auth_own_namespace: bool = attrs.field(default=True, validator=flag("auth_own_namespace"))
    #: The registry API accepts Basic credentials, not only tokens.
    auth_basic: bool = attrs.field(default=True, validator=flag("auth_basic"))
    #: Serve a token endpoint and challenge with Bearer; false: challenge with Basic.
    auth_token_service: bool = attrs.field(default=True, validator=flag("auth_token_service"))
    #: Where the token endpoint is served.
    auth_token_path: str = attrs.field(default="/token", validator=text("auth_token_path"))
    #: PEM private key signing tokens; empty: generated into data_dir on the first start.
    auth_token_key: str = attrs.field(default="", validator=text("auth_token_key"))
    #: The algorithm of a generated key: ES256 or RS256.
    auth_token_algorithm: str = attrs.field(
        default="ES256", validator=one_of("auth_token_algorithm", TOKEN_ALGORITHMS)
    )
    #: Seconds a token is valid.
    auth_token_ttl: int = attrs.field(default=300, validator=whole_number("auth_token_ttl", 10))
    #: The service name of the challenge and the tokens' audience.
    auth_service: str = attrs.field(default="ocireg", validator=text("auth_service"))
    #: The issuer (`iss`) of ocireg's tokens.
    auth_issuer: str = attrs.field(default="ocireg", validator=text("auth_issuer"))
    #: The token endpoint URL clients are sent to; empty: this server's auth_token_path.
    #: Set it behind a proxy: the client's Host header is not to be trusted.
    auth_realm: str = attrs.field(default="", validator=realm_url)
    #: An external issuer whose tokens are trusted (their `iss`).
    auth_trusted_issuer: str = attrs.field(default="", validator=text("auth_trusted_issuer"))
    #: Its public key: a PEM key or certificate, or a JWKS file.
    auth_trusted_keys: str = attrs.field(default="", validator=text("auth_trusted_keys"))
    #: Failed logins of one user from one client address within auth_login_window
    #: seconds, after which that user's logins from there are refused (429).
    auth_login_attempts: int = attrs.field(
        default=5, validator=whole_number("auth_login_attempts", 1)
    )
    auth_login_window: float = attrs.field(default=60, validator=seconds("auth_login_window"))
    #: Failed logins from one client address (any users) within auth_login_window,
    #: after which its logins are slowed down (never refused for it).
    auth_login_per_address: int = attrs.field(
        default=20, validator=whole_number("auth_login_per_address", 1)
    )
    #: Logins from one client address waiting for or in a password check; beyond: 429.
    auth_login_queue: int = attrs.field(default=4, validator=whole_number("auth_login_queue", 1))
    #: Logins from all addresses waiting for or in a password check; beyond: 429.
    auth_login_queue_total: int = attrs.field(
        default=32, validator=whole_number("auth_login_queue_total", 1)
    )
    #: Password checks (bcrypt) running at once, in threads of lower CPU priority than
    #: the reactor's; 0: one fewer than the CPUs ocireg may use, at least one.
    auth_check_threads: int = attrs.field(
        default=0, validator=whole_number("auth_check_threads", 0)
    )

    def __attrs_post_init__(self) -> None:
        if self.workers > 1 and not self.database:
            raise ConfigError(
                f"workers = {self.workers} needs a PostgreSQL database: the embedded SQLite "
                "store serves one process"
            )
        self._check_auth()

    @property
    def auth_enabled(self) -> bool:
        """Is authentication configured? Without it every request is allowed, as before."""
        return bool(self.auth_htpasswd or self.auth_trusted_keys)

    def _check_auth(self) -> None:
        if bool(self.auth_trusted_issuer) != bool(self.auth_trusted_keys):
            raise ConfigError(
                "settings 'auth_trusted_issuer' and 'auth_trusted_keys' go together: an "
                "external issuer's name and the file of its public keys"
            )
        path = self.auth_token_path
        if not path.startswith("/") or path == "/" or path.split("/")[1] in _TAKEN_PATHS:
            raise ConfigError(
                f"setting 'auth_token_path' must be a path such as /token outside "
                f"/{', /'.join(_TAKEN_PATHS)}, not {path[:60]!r}"
            )
        if not self.auth_enabled:
            return
        if not (self.auth_token_service or self.auth_basic or self.auth_realm):
            raise ConfigError(
                "with auth_token_service = false, auth_basic = false and no auth_realm, "
                "clients would have no way to log in"
            )
        if self.auth_trusted_keys and not self.auth_htpasswd and not (
            self.auth_realm or self.auth_token_service
        ):
            raise ConfigError("trusting an external issuer needs auth_realm: its token URL")

    @property
    def reserve(self) -> Reserve:
        """`min_free_space`, parsed."""
        return Reserve.parse(self.min_free_space)

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

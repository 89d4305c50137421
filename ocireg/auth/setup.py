"""The authoriser the settings describe, opened: users read, keys loaded or generated.

Everything that touches a file (the htpasswd file, the signing key, the
trusted keys, the upload secret) runs in the auth thread pool; bcrypt runs
in a `CheckPool` of its own (ocireg/auth/checkpool.py). `AuthSetup` keeps
what a reload changes: the users (re-read when the file changes, or on
SIGHUP when its path changed) and the permission rules (on SIGHUP).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from ocireg.auth.authoriser import Authoriser, OpenAuthoriser
from ocireg.auth.checkpool import CheckPool, check_threads, usable_cpus
from ocireg.auth.interfaces import Challenge, IAuthoriser
from ocireg.auth.ownership import UploadOwnership, load_or_generate_secret
from ocireg.auth.permissions import Permissions
from ocireg.auth.throttle import LoginThrottle
from ocireg.auth.tokens import (
    KeyFileError,
    TokenIssuer,
    TokenVerifier,
    TrustedIssuer,
    load_or_generate_key,
    load_public_keys,
)
from ocireg.auth.users import (
    HtpasswdError,
    HtpasswdWatcher,
    PasswordChecker,
    Users,
    load_htpasswd,
)
from ocireg.config import Config, ConfigError

_log = Logger()

#: Where a generated signing key and the upload secret live, in the data directory.
GENERATED_KEY = "token-signing-key.pem"
UPLOAD_SECRET = "upload-secret"


def permissions_of(config: Config) -> Permissions:
    return Permissions(config.auth_rules, config.auth_groups, config.auth_own_namespace)


@attrs.define
class AuthSetup:
    authoriser: IAuthoriser
    #: The thread pools it runs (the files' and the password checks'), stopped with it.
    pools: tuple[ThreadPool, ...] = ()
    watcher: HtpasswdWatcher | None = None
    _config: Config | None = None

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        for pool in self.pools:
            pool.stop()

    def reload_hooks(self) -> dict[str, Callable[[object, object], str]]:
        """Setting -> hook(old, new) for what changes without a restart."""
        return {
            "auth_rules": self._rules_changed("auth_rules"),
            "auth_groups": self._rules_changed("auth_groups"),
            "auth_own_namespace": self._rules_changed("auth_own_namespace"),
            "auth_htpasswd": self._htpasswd_changed,
        }

    def _rules_changed(self, setting: str) -> Callable[[object, object], str]:
        def hook(old: object, new: object) -> str:
            if not isinstance(self.authoriser, Authoriser) or self._config is None:
                raise ValueError("authentication is off: it needs a restart to turn on")
            self._config = attrs.evolve(self._config, **{setting: new})
            self.authoriser.set_permissions(permissions_of(self._config))
            return "permissions applied"

        return hook

    def _htpasswd_changed(self, old: object, new: object) -> str:
        if self.watcher is None or not new:
            raise ValueError("turning authentication on or off needs a restart")
        self.watcher.path = str(new)
        self.watcher.poll()
        return f"users are read from {new}"


async def open_auth(config: Config, reactor) -> AuthSetup:
    """The authoriser `config` describes; an OpenAuthoriser when auth is off."""
    if not config.auth_enabled:
        return AuthSetup(OpenAuthoriser())
    # The auth files, read one at a time.
    pool = ThreadPool(1, 1, name="ocireg-auth")
    checks = CheckPool(check_threads(config.auth_check_threads, usable_cpus()))
    pool.start()
    checks.start()
    try:
        return await _open(config, reactor, pool, checks)
    except BaseException:
        pool.stop()
        checks.stop()
        raise


async def _open(config: Config, reactor, pool: ThreadPool, checks: CheckPool) -> AuthSetup:
    def in_pool(f, *args):
        return deferToThreadPool(reactor, pool, f, *args)

    users, stamp = Users(), None
    if config.auth_htpasswd:
        try:
            users, stamp = await load_htpasswd(config.auth_htpasswd, reactor, pool)
        except HtpasswdError as e:
            raise ConfigError(f"setting 'auth_htpasswd': {e}") from None
    holder = [users]
    watcher = None
    if config.auth_htpasswd:
        watcher = HtpasswdWatcher(
            config.auth_htpasswd, users, lambda new: holder.__setitem__(0, new), reactor, pool
        )
    issuer = None
    trusted: list[TrustedIssuer] = []
    try:
        if config.auth_token_service:
            generate = not config.auth_token_key
            path = config.auth_token_key or os.path.join(config.data_dir, GENERATED_KEY)
            key = await in_pool(load_or_generate_key, path, config.auth_token_algorithm, generate)
            issuer = TokenIssuer(key, config.auth_issuer, config.auth_service,
                                 config.auth_token_ttl)
            trusted.append(TrustedIssuer(config.auth_issuer, ((key.kid, key.public_key),)))
        if config.auth_trusted_keys:
            keys = await in_pool(load_public_keys, config.auth_trusted_keys)
            trusted.append(TrustedIssuer(config.auth_trusted_issuer, keys))
    except KeyFileError as e:
        raise ConfigError(f"authentication: {e}") from None
    secret = await in_pool(load_or_generate_secret, os.path.join(config.data_dir, UPLOAD_SECRET))
    scheme = "Bearer" if (config.auth_token_service or config.auth_realm) else "Basic"
    authoriser = Authoriser(
        permissions=permissions_of(config),
        passwords=PasswordChecker(lambda: holder[0], reactor, checks),
        throttle=LoginThrottle(
            reactor, config.auth_login_attempts, config.auth_login_window,
            config.auth_login_per_address, config.auth_login_queue,
            config.auth_login_queue_total,
        ),
        ownership=UploadOwnership(secret),
        clock=reactor,
        challenge=Challenge(scheme, config.auth_realm or None, config.auth_service,
                            config.auth_token_path),
        issuer=issuer,
        verifier=TokenVerifier(config.auth_service, tuple(trusted)) if trusted else None,
        accepts_basic=config.auth_basic,
    )
    if watcher is not None:
        watcher.start(stamp)
    _log.info(
        "authentication on: {users} users, {rules} rules, {scheme} challenge{tokens}, "
        "{threads} password checks at once",
        users=len(users.hashes), rules=len(config.auth_rules), scheme=scheme,
        threads=checks.max,
        tokens=f", tokens at {config.auth_token_path}" if issuer else "",
    )
    return AuthSetup(authoriser, (pool, checks), watcher, config)

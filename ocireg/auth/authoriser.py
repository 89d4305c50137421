"""The authorisers: `OpenAuthoriser` when auth is off, `Authoriser` when it is on.

`Authoriser` authenticates Basic credentials against the htpasswd users
(throttled, bcrypt in a thread) and bearer tokens against the trusted
issuers, decides from the permission rules or the token's grants, and
issues tokens granting the intersection of what was asked and what the
rules allow.
"""

from __future__ import annotations

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from ocireg.auth.interfaces import (
    ANONYMOUS,
    AuthenticationFailed,
    BasicCredentials,
    BearerCredentials,
    Challenge,
    Credentials,
    Decision,
    IAuthoriser,
    Principal,
)
from ocireg.auth.ownership import UploadOwnership
from ocireg.auth.permissions import PULL, Permissions
from ocireg.auth.throttle import LoginThrottle
from ocireg.auth.tokens import (
    Access,
    IssuedToken,
    TokenError,
    TokenIssuer,
    TokenVerifier,
)
from ocireg.auth.users import PasswordChecker
from ocireg.errors import RegistryError
from ocireg.names import validate_name

_log = Logger()

#: The scope a client asks for to list the catalog.
CATALOG = Access("registry", "catalog", ("*",))
#: The scope a token needs for the management API (/api/v1/): an admin's token
#: for pulling is no key to it.
MANAGEMENT = Access("registry", "management", ("*",))
#: A longer user name is no user's: refused before it costs a bcrypt or a throttle entry.
MAX_USER_BYTES = 256


@implementer(IAuthoriser)
class OpenAuthoriser:
    """No authentication configured: everyone may do everything, as an anonymous caller."""

    enabled = False
    challenge = Challenge("Basic", None, "ocireg", "/token")
    accepts_basic = True
    issues_tokens = False

    async def authenticate(self, credentials: Credentials, address: str) -> Principal:
        return ANONYMOUS

    def decide(self, principal: Principal, repository: str, action: str) -> Decision:
        return Decision.ALLOW

    def catalog(self, principal: Principal) -> Decision:
        return Decision.ALLOW

    def may_see(self, principal: Principal, repository: str) -> bool:
        return True

    def admin(self, principal: Principal) -> Decision:
        return Decision.ALLOW

    def issue_token(self, principal: Principal, requested: tuple[Access, ...],
                    now: float) -> IssuedToken:
        raise AuthenticationFailed("this registry issues no tokens")

    def new_upload_id(self, principal: Principal) -> str | None:
        return None

    def owns_upload(self, principal: Principal, upload_id: str) -> bool:
        return True


@implementer(IAuthoriser)
@attrs.define
class Authoriser:
    permissions: Permissions
    passwords: PasswordChecker
    throttle: LoginThrottle
    ownership: UploadOwnership
    clock: IReactorTime
    challenge: Challenge
    #: None when ocireg serves no token endpoint of its own.
    issuer: TokenIssuer | None
    #: None when no token is trusted.
    verifier: TokenVerifier | None
    accepts_basic: bool = True
    enabled = True

    @property
    def issues_tokens(self) -> bool:
        return self.issuer is not None

    # Who is calling

    async def authenticate(self, credentials: Credentials, address: str) -> Principal:
        if credentials is None:
            return ANONYMOUS
        if isinstance(credentials, BearerCredentials):
            if self.verifier is None:
                raise AuthenticationFailed("this registry accepts no tokens", invalid_token=True)
            try:
                verified = self.verifier.verify(credentials.token, self.clock.seconds())
            except TokenError as e:
                _log.info("refused a token from {address}: {reason}", address=address,
                          reason=str(e))
                raise AuthenticationFailed(str(e), invalid_token=True) from None
            return Principal(verified.subject or None, verified)
        assert isinstance(credentials, BasicCredentials)
        user = credentials.user
        if not user:
            # containers/image sends an empty Basic pair when it has no credentials.
            return ANONYMOUS
        if len(user.encode("utf-8", "surrogatepass")) > MAX_USER_BYTES:
            raise AuthenticationFailed("wrong user name or password")
        if self.passwords.remembered(user, credentials.password):
            # Right a moment ago: no bcrypt, so nothing for the throttle to guard.
            return Principal(user)
        shared = self.passwords.pending(user, credentials.password)
        if shared is not None:
            # The same pair is being checked already: one attempt, one bcrypt.
            ok = await shared
        else:
            attempt = self.throttle.begin(user, address)
            ok = False
            try:
                if attempt.delay:
                    await deferLater(self.clock, attempt.delay)
                ok = await self.passwords.check(user, credentials.password)
            finally:
                attempt.done(ok)
        if ok:
            return Principal(user)
        # Never the password: not even a wrong one (it may be a right one mistyped).
        _log.warn("failed login for user {user!r} from {address}", user=user[:100],
                  address=address)
        raise AuthenticationFailed("wrong user name or password")

    # What they may do

    def _own_token(self, principal: Principal) -> bool:
        return (principal.token is not None and self.issuer is not None
                and principal.token.issuer == self.issuer.issuer)

    def decide(self, principal: Principal, repository: str, action: str) -> Decision:
        token = principal.token
        if token is not None:
            if token.grants("repository", repository, action):
                return Decision.ALLOW
            if not self._own_token(principal):
                # Another issuer decides what its users may have: ask it again.
                return Decision.RESCOPE
            if self.permissions.allows(principal.user, repository, action):
                return Decision.RESCOPE
            return Decision.LOGIN if principal.user is None else Decision.DENY
        if self.permissions.allows(principal.user, repository, action):
            return Decision.ALLOW
        return Decision.LOGIN if principal.user is None else Decision.DENY

    def catalog(self, principal: Principal) -> Decision:
        if principal.token is None or principal.token.grants(CATALOG.type, CATALOG.name, "*"):
            return Decision.ALLOW
        return Decision.RESCOPE

    def may_see(self, principal: Principal, repository: str) -> bool:
        if principal.token is not None and not self._own_token(principal):
            return principal.token.grants("repository", repository, PULL)
        return self.permissions.allows(principal.user, repository, PULL)

    def admin(self, principal: Principal) -> Decision:
        is_admin = self.permissions.is_admin(principal.user)
        token = principal.token
        if token is not None and not self._own_token(principal):
            # Another issuer's users are not ours to make admins.
            is_admin = False
        elif token is not None and not token.grants(MANAGEMENT.type, MANAGEMENT.name, "*"):
            return Decision.RESCOPE if is_admin else Decision.DENY
        if is_admin:
            return Decision.ALLOW
        return Decision.LOGIN if principal.user is None else Decision.DENY

    # Tokens

    def issue_token(self, principal: Principal, requested: tuple[Access, ...],
                    now: float) -> IssuedToken:
        if self.issuer is None:
            raise AuthenticationFailed("this registry issues no tokens")
        # (type, name) -> actions: a name asked for twice is one grant.
        granted: dict[tuple[str, str], tuple[str, ...]] = {}
        for access in requested:
            if (access.type, access.name) == (CATALOG.type, CATALOG.name):
                # Anyone may list the catalog; it shows only what they may pull.
                granted[CATALOG.type, CATALOG.name] = CATALOG.actions
                continue
            if (access.type, access.name) == (MANAGEMENT.type, MANAGEMENT.name):
                if self.permissions.is_admin(principal.user):
                    granted[MANAGEMENT.type, MANAGEMENT.name] = MANAGEMENT.actions
                continue
            if access.type != "repository" or not _valid_name(access.name):
                continue
            allowed = self.permissions.actions(principal.user, access.name)
            before = granted.get(("repository", access.name), ())
            actions = tuple(a for a in dict.fromkeys(before + access.actions) if a in allowed)
            if actions:
                granted["repository", access.name] = actions
        return self.issuer.issue(
            principal.name,
            tuple(Access(kind, name, actions) for (kind, name), actions in granted.items()),
            now,
        )

    # Uploads

    def new_upload_id(self, principal: Principal) -> str | None:
        return self.ownership.new_id(principal.name)

    def owns_upload(self, principal: Principal, upload_id: str) -> bool:
        return self.ownership.owns(upload_id, principal.name)

    # Reloading

    def set_permissions(self, permissions: Permissions) -> None:
        self.permissions = permissions


def _valid_name(name: str) -> bool:
    try:
        validate_name(name)
    except RegistryError:
        return False
    return True

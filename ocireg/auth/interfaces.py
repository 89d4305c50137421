"""The seam between the API layer and authentication: `IAuthoriser` and its value types.

The API layer parses the `Authorization` header into credentials, asks the
authoriser who is calling and whether they may do an action on a
repository, and renders the `Decision` (401 with a challenge, or 403).
"""

from __future__ import annotations

import enum

import attrs
from zope.interface import Attribute, Interface

from ocireg.auth.tokens import Access, IssuedToken, VerifiedToken


@attrs.frozen
class BasicCredentials:
    user: str
    password: str = attrs.field(repr=False)


@attrs.frozen
class BearerCredentials:
    token: str = attrs.field(repr=False)


Credentials = BasicCredentials | BearerCredentials | None


@attrs.frozen
class Principal:
    """Who is calling: a user name, or None for an anonymous caller.

    `token` is set when the caller showed a token: then it, not the rules,
    says what the caller may do.
    """

    user: str | None
    token: VerifiedToken | None = None

    @property
    def name(self) -> str:
        """The user name, "" for an anonymous caller (as the `sub` of a token)."""
        return self.user or ""


ANONYMOUS = Principal(None)


class Decision(enum.Enum):
    ALLOW = "allow"
    #: Not allowed without logging in: 401 with a challenge.
    LOGIN = "login"
    #: The caller's token does not cover this, but a new one could: 401 insufficient_scope.
    RESCOPE = "rescope"
    #: Authenticated, and not allowed: 403.
    DENY = "deny"


class AuthenticationFailed(Exception):
    """Credentials that do not authenticate anyone; `invalid_token` when they were a token."""

    def __init__(self, reason: str, invalid_token: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.invalid_token = invalid_token


@attrs.frozen
class Challenge:
    """How a client is told to authenticate: `scheme` Bearer (with a token realm) or Basic."""

    scheme: str
    #: The token endpoint's URL; None: this server's `token_path`.
    realm: str | None
    service: str
    token_path: str


class IAuthoriser(Interface):
    enabled = Attribute("False when no authentication is configured: everything is open")
    challenge = Attribute("The Challenge sent with a 401")
    accepts_basic = Attribute("Does the registry API accept Basic credentials directly?")
    issues_tokens = Attribute("Does ocireg serve its own token endpoint?")

    def authenticate(credentials: Credentials, address: str):
        """A Deferred firing with the Principal; AuthenticationFailed or Throttled."""

    def decide(principal: Principal, repository: str, action: str) -> Decision:
        """May `principal` do `action` (pull, push, delete, admin) on `repository`?"""

    def catalog(principal: Principal) -> Decision:
        """May `principal` list the catalog (filtered by `may_see`)?"""

    def may_see(principal: Principal, repository: str) -> bool:
        """Is `repository` in `principal`'s catalog (may they pull it)?"""

    def admin(principal: Principal) -> Decision:
        """May `principal` use the management API? (A token needs its management scope.)"""

    def issue_token(principal: Principal, requested: tuple[Access, ...], now: float) -> IssuedToken:
        """A token granting what was asked and is allowed."""

    def new_upload_id(principal: Principal) -> str | None:
        """An id for an upload that `principal` opens; None: the registry picks one."""

    def owns_upload(principal: Principal, upload_id: str) -> bool:
        """Did `principal` open upload `upload_id`?"""

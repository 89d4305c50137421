"""Authentication at the HTTP edge: credentials from headers, 401 and 403 out.

`RequestAccess` parses a request's `Authorization` header, asks the
`IAuthoriser` who is calling (once per request, shared by the body path and
the handler) and whether they may act on a repository, and turns a refusal
into the registry error the spec gives: 401 `UNAUTHORIZED` with a
`WWW-Authenticate` challenge naming the scope the client needs, or 403
`DENIED`. `TokenAPI` is the token endpoint; `AdminOnly` guards the
management API.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from urllib.parse import parse_qs

from klein import Klein
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from ocireg.api.errors import (
    INTERNAL,
    NO_SUCH_ENDPOINT,
    TOKEN_REQUEST_INVALID,
    install_error_handlers,
    management_error,
    oci_error,
)
from ocireg.api.render import json_response
from ocireg.api.streaming import kept_body
from ocireg.auth.authoriser import MANAGEMENT
from ocireg.auth.interfaces import (
    AuthenticationFailed,
    BasicCredentials,
    BearerCredentials,
    Credentials,
    Decision,
    IAuthoriser,
    Principal,
)
from ocireg.auth.permissions import DELETE, PULL, PUSH
from ocireg.auth.throttle import Throttled
from ocireg.auth.tokens import TokenTooLarge, parse_scopes
from ocireg.errors import (
    BLOB_UPLOAD_UNKNOWN,
    BODY_TOO_LARGE,
    DENIED,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    UNSUPPORTED,
    RegistryError,
)
from ocireg.uploads import client_key

_log = Logger()

#: An Authorization header longer than this is refused unread.
MAX_AUTHORIZATION = 8192
#: A token request's form: a user name, a password and up to 64 scopes fit well.
MAX_TOKEN_BODY = 64 * 1024

#: The actions a client asks a token for, to do each action.
_SCOPE_ACTIONS = {PULL: "pull", PUSH: "pull,push", DELETE: "delete"}


def parse_authorization(values: list[bytes] | None) -> Credentials:
    """The credentials of the `Authorization` header lines; AuthenticationFailed if malformed."""
    if not values:
        return None
    if len(values) > 1:
        raise AuthenticationFailed("more than one Authorization header")
    raw = values[0]
    if len(raw) > MAX_AUTHORIZATION:
        raise AuthenticationFailed("the Authorization header is too long")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise AuthenticationFailed("the Authorization header is not ASCII") from None
    scheme, _, value = text.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return BearerCredentials(value)
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise AuthenticationFailed("malformed Basic credentials") from None
        user, colon, password = decoded.partition(":")
        if not colon:
            raise AuthenticationFailed("malformed Basic credentials")
        return BasicCredentials(user, password)
    raise AuthenticationFailed("the Authorization header is neither Basic nor Bearer")


def _address(request: IRequest) -> str:
    channel = getattr(request, "channel", None)
    peer = channel.getPeer() if channel is not None and channel.transport is not None else None
    return getattr(peer, "host", None) or str(peer)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Shared:
    """The outcome of one authentication, handed to every part of a request that asks."""

    def __init__(self, d: Deferred) -> None:
        self._done = False
        self._outcome: object = None
        self._waiting: list[Deferred] = []
        d.addBoth(self._fire)

    def _fire(self, outcome: object) -> None:
        self._done, self._outcome = True, outcome
        waiting, self._waiting = self._waiting, []
        for w in waiting:
            w.callback(outcome)

    def get(self) -> Deferred:
        if self._done:
            return succeed(self._outcome)
        d: Deferred = Deferred()
        self._waiting.append(d)
        return d


class RequestAccess:
    """Who is calling, and may they: the registry API's questions to `authoriser`."""

    def __init__(self, authoriser: IAuthoriser) -> None:
        self.authoriser = authoriser

    @property
    def enabled(self) -> bool:
        return bool(self.authoriser.enabled)

    # Who

    async def _outcome(self, request: IRequest) -> object:
        """The Principal, or the RegistryError refusing the credentials (returned, not raised)."""
        try:
            credentials = parse_authorization(
                request.requestHeaders.getRawHeaders(b"authorization")
            )
            if isinstance(credentials, BasicCredentials) and credentials.user and not (
                self.authoriser.accepts_basic
            ):
                raise AuthenticationFailed("this registry takes tokens, not Basic credentials")
            return await self.authoriser.authenticate(credentials, _address(request))
        except AuthenticationFailed as e:
            return self._unauthorized(request, None, e.reason,
                                      "invalid_token" if e.invalid_token else None)
        except Throttled as e:
            return RegistryError(TOO_MANY_REQUESTS, str(e),
                                 headers={"Retry-After": str(e.retry_after)})

    async def principal(self, request: IRequest) -> Principal:
        """Who is calling; 401 (or 429) when the credentials do not authenticate anyone."""
        if not self.enabled:
            return await self.authoriser.authenticate(None, "")
        shared = getattr(request, "_ocireg_principal", None)
        if shared is None:
            shared = _Shared(Deferred.fromCoroutine(self._outcome(request)))
            request._ocireg_principal = shared  # type: ignore[attr-defined]
        outcome = await shared.get()
        if isinstance(outcome, RegistryError):
            raise outcome
        assert isinstance(outcome, Principal)
        # For the access log: a token's user is not in the Authorization header.
        request.ocireg_user = outcome.user  # type: ignore[attr-defined]
        return outcome

    # May they

    async def require(self, request: IRequest, repository: str, action: str) -> Principal:
        """The caller, if they may do `action` on `repository`; else 401 or 403."""
        principal = await self.principal(request)
        decision = self.authoriser.decide(principal, repository, action)
        if decision is Decision.ALLOW:
            return principal
        scope = f"repository:{repository}:{_SCOPE_ACTIONS.get(action, action)}"
        detail = [{"Type": "repository", "Name": repository, "Action": action}]
        if decision is Decision.DENY:
            raise RegistryError(DENIED, f"{principal.name} may not {action} {repository}", detail)
        raise self._unauthorized(
            request, scope, f"{action} on {repository} needs authentication",
            "insufficient_scope" if decision is Decision.RESCOPE else None, detail,
        )

    async def may(self, request: IRequest, repository: str, action: str) -> bool:
        """May the caller do `action` on `repository`? (A refusal is no error here.)"""
        principal = await self.principal(request)
        return self.authoriser.decide(principal, repository, action) is Decision.ALLOW

    async def require_login(self, request: IRequest) -> Principal:
        """The caller, who must have shown valid credentials (anonymous callers get a 401)."""
        principal = await self.principal(request)
        if self.enabled and principal.user is None and principal.token is None:
            raise self._unauthorized(request, None, "authentication required")
        return principal

    async def require_upload(self, request: IRequest, repository: str, uuid: str) -> None:
        """The caller may push to `repository` and opened upload `uuid`; its owner's only."""
        principal = await self.require(request, repository, PUSH)
        if not self.authoriser.owns_upload(principal, uuid):
            # As if it did not exist: its id is no key to another user's upload.
            raise RegistryError(
                BLOB_UPLOAD_UNKNOWN,
                f"upload {uuid!r} is not in progress in repository {repository!r}",
                {"uuid": uuid},
            )

    async def new_upload_id(self, request: IRequest) -> str | None:
        return self.authoriser.new_upload_id(await self.principal(request))

    async def upload_client(self, request: IRequest) -> str:
        """Whose open upload sessions a new one counts with: the caller's, or their address's."""
        return client_key((await self.principal(request)).user, _address(request))

    def upload_guard(self, request: IRequest) -> RequestUploadGuard:
        """What the body path asks before writing `request`'s upload body."""
        return RequestUploadGuard(self, request)

    async def catalog_filter(self, request: IRequest) -> Callable[[str], bool]:
        """Which repositories the caller's catalog lists; 401 when their token does not cover it."""
        principal = await self.principal(request)
        if self.authoriser.catalog(principal) is not Decision.ALLOW:
            raise self._unauthorized(request, "registry:catalog:*", "listing the catalog needs "
                                     "a token for it", "insufficient_scope")
        return lambda name: self.authoriser.may_see(principal, name)

    async def require_admin(self, request: IRequest) -> Principal:
        principal = await self.principal(request)
        decision = self.authoriser.admin(principal)
        if decision is Decision.ALLOW:
            return principal
        if decision is Decision.RESCOPE:
            raise self._unauthorized(request, MANAGEMENT.to_scope(), "the management API needs "
                                     "Basic credentials or a token for it", "insufficient_scope")
        if decision is Decision.LOGIN:
            raise self._unauthorized(request, None, "the management API needs an admin",
                                     basic=True)
        raise RegistryError(DENIED, f"{principal.name or 'this token'} is not an admin")

    # The challenge

    def realm(self, request: IRequest) -> str:
        challenge = self.authoriser.challenge
        if challenge.realm:
            return challenge.realm
        host = request.getHeader("host") or "localhost"
        scheme = "https" if request.isSecure() else "http"
        return f"{scheme}://{host}{challenge.token_path}"

    def _unauthorized(
        self,
        request: IRequest,
        scope: str | None,
        message: str,
        error: str | None = None,
        detail: object = None,
        basic: bool = False,
    ) -> RegistryError:
        challenge = self.authoriser.challenge
        if challenge.scheme == "Basic" or basic:
            header = f"Basic realm={_quoted(challenge.service)}"
        else:
            parts = [f"realm={_quoted(self.realm(request))}",
                     f"service={_quoted(challenge.service)}"]
            if scope is not None:
                parts.append(f"scope={_quoted(scope)}")
            if error is not None:
                parts.append(f"error={_quoted(error)}")
            header = "Bearer " + ",".join(parts)
        return RegistryError(UNAUTHORIZED, message, detail, {"WWW-Authenticate": header})


class RequestUploadGuard:
    """The `streaming.UploadGuard` of one request."""

    def __init__(self, access: RequestAccess, request: IRequest) -> None:
        self._access = access
        self._request = request

    async def may_push(self, name: str) -> str | None:
        await self._access.require(self._request, name, PUSH)
        return await self._access.new_upload_id(self._request)

    async def may_write(self, name: str, uuid: str) -> None:
        await self._access.require_upload(self._request, name, uuid)

    async def client(self) -> str:
        return await self._access.upload_client(self._request)


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class TokenAPI:
    """The token endpoint of the Docker registry token specification, at `path`."""

    def __init__(self, access: RequestAccess, path: str, clock) -> None:
        self._access = access
        self._clock = clock
        self._path = path

    def resource(self) -> IResource:
        # An app per instance: the path is the configuration's.
        instance = Klein()
        instance.route(self._path, methods=["GET"])(self._get)
        instance.route(self._path, methods=["POST"])(self._post)
        install_error_handlers(instance, oci_error, lambda request: NO_SUCH_ENDPOINT)
        return instance.resource()

    async def _get(self, request: IRequest) -> bytes:
        args = {k.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in vs]
                for k, vs in request.args.items()}
        return await self._issue(request, args, None)

    async def _post(self, request: IRequest) -> bytes:
        # The OAuth2 form docker sends with a stored identity: a password grant.
        raw = await kept_body(request, authorised_elsewhere=True)
        if len(raw) > MAX_TOKEN_BODY:
            raise RegistryError(
                BODY_TOO_LARGE, f"a token request is at most {MAX_TOKEN_BODY} bytes"
            )
        try:
            args = parse_qs(raw.decode("utf-8"), max_num_fields=100)
        except (UnicodeDecodeError, ValueError):
            raise RegistryError(TOKEN_REQUEST_INVALID, "the body is not a form") from None
        grant = (args.get("grant_type") or [""])[0]
        if grant != "password":
            raise RegistryError(UNSUPPORTED, f"grant_type {grant[:40]!r} is not supported; "
                                "use password")
        user = (args.get("username") or [""])[0]
        password = (args.get("password") or [""])[0]
        return await self._issue(request, args, BasicCredentials(user, password))

    async def _issue(self, request: IRequest, args: dict[str, list[str]],
                     form: BasicCredentials | None) -> bytes:
        access = self._access
        service = (args.get("service") or [None])[0]
        if service is not None and service != access.authoriser.challenge.service:
            raise RegistryError(TOKEN_REQUEST_INVALID, f"unknown service {service[:60]!r}")
        try:
            requested = parse_scopes(args.get("scope", []))
        except ValueError as e:
            raise RegistryError(TOKEN_REQUEST_INVALID, str(e)) from None
        try:
            if form is not None:
                principal = await access.authoriser.authenticate(form, _address(request))
            else:
                credentials = parse_authorization(
                    request.requestHeaders.getRawHeaders(b"authorization")
                )
                if isinstance(credentials, BearerCredentials):
                    raise AuthenticationFailed("log in with a user name and password")
                principal = await access.authoriser.authenticate(credentials, _address(request))
        except AuthenticationFailed as e:
            raise RegistryError(
                UNAUTHORIZED, e.reason,
                headers={"WWW-Authenticate": f"Basic realm={_quoted(access.realm(request))}"},
            ) from None
        except Throttled as e:
            raise RegistryError(TOO_MANY_REQUESTS, str(e),
                                headers={"Retry-After": str(e.retry_after)}) from None
        try:
            issued = access.authoriser.issue_token(principal, requested, self._clock.seconds())
        except TokenTooLarge as e:
            raise RegistryError(TOKEN_REQUEST_INVALID, str(e)) from None
        request.setHeader("Cache-Control", "no-store")
        return json_response(request, {
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": _rfc3339(issued.issued_at),
            "scope": " ".join(a.to_scope() for a in issued.granted),
        })


class AdminOnly(Resource):
    """`resource` (the management API) for admins only: 401 or 403 for anyone else."""

    isLeaf = True

    def __init__(self, resource: IResource, access: RequestAccess) -> None:
        super().__init__()
        self._resource = resource
        self._access = access

    def render(self, request: IRequest):
        if not self._access.enabled:
            return self._resource.render(request)
        d = Deferred.fromCoroutine(self._access.require_admin(request))
        d.addCallbacks(lambda _: self._allowed(request), lambda f: self._refused(request, f))
        return NOT_DONE_YET

    def _allowed(self, request: IRequest) -> None:
        if getattr(request, "_disconnected", False):
            return
        result = self._resource.render(request)
        if result is not NOT_DONE_YET:
            request.write(result)
            request.finish()

    def _refused(self, request: IRequest, failure) -> None:
        if getattr(request, "_disconnected", False):
            return
        error = failure.value
        if not isinstance(error, RegistryError):
            _log.failure("checking an admin", failure)
            error = RegistryError(INTERNAL)
        request.write(management_error(request, error))
        request.finish()

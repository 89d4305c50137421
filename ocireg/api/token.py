"""The token endpoint of the Docker registry token specification.

`TokenAPI` takes a user's password (Basic credentials, or the OAuth2 form
docker sends with a stored identity) and answers a token granting what of
the scopes asked for that user may have, through the same `IAuthoriser`
(and login throttle) as Basic credentials on `/v2/`.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from klein import Klein
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from ocireg.api.auth import RequestAccess, client_address, parse_authorization, quoted
from ocireg.api.errors import (
    NO_SUCH_ENDPOINT,
    TOKEN_REQUEST_INVALID,
    install_error_handlers,
    oci_error,
)
from ocireg.api.render import json_response
from ocireg.api.streaming import kept_body
from ocireg.auth.interfaces import AuthenticationFailed, BasicCredentials, BearerCredentials
from ocireg.auth.throttle import Throttled
from ocireg.auth.tokens import TokenTooLarge, parse_scopes
from ocireg.errors import (
    BODY_TOO_LARGE,
    TOO_MANY_REQUESTS,
    UNAUTHORIZED,
    UNSUPPORTED,
    RegistryError,
)

#: A token request's form: a user name, a password and up to 64 scopes fit well.
MAX_TOKEN_BODY = 64 * 1024


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
        address = client_address(request)
        try:
            if form is not None:
                principal = await access.authoriser.authenticate(form, address)
            else:
                credentials = parse_authorization(
                    request.requestHeaders.getRawHeaders(b"authorization")
                )
                if isinstance(credentials, BearerCredentials):
                    raise AuthenticationFailed("log in with a user name and password")
                principal = await access.authoriser.authenticate(credentials, address)
        except AuthenticationFailed as e:
            raise RegistryError(
                UNAUTHORIZED, e.reason,
                headers={"WWW-Authenticate": f"Basic realm={quoted(access.realm(request))}"},
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

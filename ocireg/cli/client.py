"""The registry as the `ocireg` command calls it, and how the command ends.

Each failure becomes a `CommandError` with the exit code that says what
happened (EXIT_* below): the answer's status, or that the registry could
not be reached, or did not answer in time.
"""

from __future__ import annotations

import json
import re
from urllib.parse import SplitResult, quote, urlsplit

import attrs
import treq
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    ResponseNeverReceived,
)
from twisted.web.iweb import IAgent, IPolicyForHTTPS, IResponse
from zope.interface import implementer

EXIT_OK = 0
#: The server failed (5xx) or answered something this command does not understand.
EXIT_FAILED = 1
#: Bad usage or bad input (400).
EXIT_USAGE = 2
#: What was named does not exist (404).
EXIT_NOT_FOUND = 3
#: The request conflicts with the current state (409), or was refused (403, 401).
EXIT_CONFLICT = 4
#: The server could not be reached, or did not answer within --timeout.
EXIT_UNREACHABLE = 5

_EXIT_BY_STATUS = {400: EXIT_USAGE, 401: EXIT_CONFLICT, 403: EXIT_CONFLICT, 404: EXIT_NOT_FOUND,
                   409: EXIT_CONFLICT, 413: EXIT_USAGE}

DEFAULT_URL = "http://localhost:5000"

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL
)


class CommandError(Exception):
    """Ends the command with `message` on stderr and exit code `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@implementer(IPolicyForHTTPS)
class _NoVerification:
    """TLS that checks neither the certificate's issuer nor its names (--insecure)."""

    def creatorForNetloc(self, hostname: bytes, port: int) -> ssl.CertificateOptions:
        return ssl.CertificateOptions(verify=False)


def tls_policy(cacert: str | None, insecure: bool) -> IPolicyForHTTPS:
    """How https URLs are checked: the system's trusted issuers, those of `cacert`, or not."""
    if insecure:
        return _NoVerification()
    if cacert is None:
        return BrowserLikePolicyForHTTPS()
    try:
        with open(cacert, "rb") as f:
            found = _PEM_CERTIFICATE.findall(f.read())
        certificates = [ssl.Certificate.loadPEM(pem) for pem in found]
    except (OSError, SSL.Error) as e:
        raise CommandError(f"--cacert {cacert}: {_reason(e)}", EXIT_USAGE) from None
    if not certificates:
        raise CommandError(f"--cacert {cacert}: no PEM certificate in it", EXIT_USAGE)
    return BrowserLikePolicyForHTTPS(ssl.trustRootFromCertificates(certificates))


def make_agent(reactor, tls: IPolicyForHTTPS) -> IAgent:
    """An agent for one command: no connection kept for later, https checked by `tls`."""
    return Agent(reactor, contextFactory=tls, pool=HTTPConnectionPool(reactor, persistent=False))


def check_url(text: str) -> str:
    """`text` if it is an http or https URL with a host; a usage error naming the fix if not."""
    parts = urlsplit(text)
    if parts.scheme in ("http", "https") and parts.hostname and _port_is_valid(parts):
        return text
    hint = f" (did you mean http://{text}?)" if "://" not in text else ""
    raise CommandError(
        f"--url {text!r} is not the registry's URL: give http://HOST[:PORT] or "
        f"https://HOST[:PORT]{hint}",
        EXIT_USAGE,
    )


def _global_reactor() -> IReactorTime:
    from twisted.internet import reactor

    return reactor


def _port_is_valid(parts: SplitResult) -> bool:
    try:
        return parts.port is None or parts.port > 0
    except ValueError:
        return False


@attrs.define
class Client:
    """The registry at `url` (its management API under /api/v1, its /v2 API), through treq."""

    url: str
    timeout: float
    #: An `Authorization` header value, when the registry wants credentials.
    authorization: str | None = None
    #: What makes the connections (`agent`), or None for treq's default.
    agent: IAgent | None = None
    #: What times each request out.
    clock: IReactorTime = attrs.field(factory=_global_reactor)

    async def call(self, method: str, path: str, body: object = None) -> object:
        """The management API's answer to `method` `path` (under /api/v1), as JSON."""
        document, _ = await self.request(method, "/api/v1" + path, body)
        return document

    async def request(
        self, method: str, path: str, body: object = None
    ) -> tuple[object, dict[str, list[str]]]:
        """The JSON answer to `method` `path` (from the registry's root), and its headers."""
        headers = {}
        kwargs: dict = {"persistent": False}
        if self.agent is not None:
            kwargs["agent"] = self.agent
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        if body is not None:
            kwargs["data"] = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        kwargs["headers"] = headers
        target = self.url.rstrip("/") + path
        exchange = Deferred.fromCoroutine(_exchange(method, target, kwargs))
        # One deadline for connecting, the answer and its body: a cancel at any of
        # those stages fails with a different error, so the timer is what tells.
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            exchange.cancel()

        timer = self.clock.callLater(self.timeout, expire)
        try:
            response, raw = await exchange
        except Exception as e:
            if expired:
                raise CommandError(
                    f"{self.url} did not answer within {self.timeout:g} s: timed out "
                    "(a longer --timeout waits more)",
                    EXIT_UNREACHABLE,
                ) from None
            raise self._unreachable(e) from e
        finally:
            if timer.active():
                timer.cancel()
        answered = {
            k.decode("latin-1").lower(): [v.decode("latin-1") for v in values]
            for k, values in response.headers.getAllRawHeaders()
        }
        try:
            document = json.loads(raw) if raw else None
        except ValueError:
            document = None
            if response.code < 400:
                raise CommandError(
                    f"{method} {target} answered {response.code} with a body that is not JSON",
                    EXIT_FAILED,
                ) from None
        if response.code >= 400:
            raise self._refused(method, path, target, response.code, document)
        return document, answered

    def _unreachable(self, e: Exception) -> CommandError:
        reasons = _reasons(e)
        tls = next((r for r in reasons if isinstance(r, SSL.Error)), None)
        if tls is not None:
            return CommandError(
                f"cannot reach {self.url}: TLS failed ({_reason(tls)}); trust its certificate "
                "with --cacert FILE, or skip the check with --insecure",
                EXIT_UNREACHABLE,
            )
        if all(isinstance(r, ResponseNeverReceived | ConnectionDone | ConnectionLost)
               for r in reasons):
            return CommandError(
                f"cannot reach {self.url}: the connection closed before an answer",
                EXIT_UNREACHABLE,
            )
        return CommandError(f"cannot reach {self.url}: {_reason(reasons[-1])}", EXIT_UNREACHABLE)

    def _refused(
        self, method: str, path: str, target: str, status: int, document: object
    ) -> CommandError:
        code = _EXIT_BY_STATUS.get(status, EXIT_FAILED)
        message = _error_text(document)
        if status == 404 and path.startswith("/api/v1/") and not _is_management_error(document):
            # Whatever answered, it was not the management API: most often a path in --url.
            message = (f"{method} {target} answered 404, not as the management API would: "
                       "is --url the registry's address (http://HOST[:PORT], no path)?")
        elif message is None:
            message = f"{method} {target} answered {status}"
        if status == 401:
            if self.authorization is None:
                message += ("; log in with --user USER (the password from $OCIREG_PASSWORD "
                            "or --password-stdin)")
            else:
                message += "; the registry refused the user and password given"
        return CommandError(message, code)


def _reasons(e: BaseException) -> list[BaseException]:
    """`e`, or what twisted.web says lies under it (ResponseNeverReceived and the like)."""
    found: list[BaseException] = []
    under = getattr(e, "reasons", None)
    if isinstance(under, list) and under:
        for reason in under:
            value = reason.value if isinstance(reason, Failure) else reason
            if isinstance(value, BaseException):
                found.extend(_reasons(value))
    return found or [e]


def _reason(e: BaseException) -> str:
    if isinstance(e, SSL.Error):
        # pyOpenSSL's errors are lists of (library, function, reason) triples.
        parts = [
            str(item[-1]) for item in (e.args[0] if e.args and isinstance(e.args[0], list)
                                       else []) if isinstance(item, tuple) and item
        ]
        if parts:
            return "; ".join(parts)
    return str(e).strip().rstrip(".") or type(e).__name__


def _is_management_error(document: object) -> bool:
    return isinstance(document, dict) and isinstance(document.get("error"), dict)


def _error_text(document: object) -> str | None:
    """The error a management API document (`error`) or an OCI one (`errors`) gives."""
    if not isinstance(document, dict):
        return None
    error = document.get("error")
    if isinstance(error, dict):
        message = f"{error.get('code')}: {error.get('message')}"
        if error.get("field"):
            message += f" (field: {error['field']})"
        return message
    errors = document.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors
                         if isinstance(e, dict))
    return None


async def _exchange(method: str, target: str, kwargs: dict) -> tuple[IResponse, bytes]:
    response = await treq.request(method, target, **kwargs)
    return response, await response.content()


def quote_name(path: str) -> str:
    """`path` (a repository name or base path) as it goes into the API's URLs.

    Repository names keep their '/'s in the URL; nothing else needs escaping.
    """
    return quote(path, safe="/")

"""The management API as the `ocireg` command calls it, and how the command ends.

Each failure becomes a `CommandError` with the exit code that says what
happened (EXIT_* below): the API's status, or that the registry could not
be reached.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import attrs
import treq
from twisted.internet.error import ConnectError, DNSLookupError, TimeoutError
from twisted.web.client import ResponseNeverReceived

EXIT_OK = 0
#: The server failed (5xx) or answered something this command does not understand.
EXIT_FAILED = 1
#: Bad usage or bad input (400).
EXIT_USAGE = 2
#: What was named does not exist (404).
EXIT_NOT_FOUND = 3
#: The request conflicts with the current state (409), or was refused (403).
EXIT_CONFLICT = 4
#: The server could not be reached.
EXIT_UNREACHABLE = 5

_EXIT_BY_STATUS = {400: EXIT_USAGE, 403: EXIT_CONFLICT, 404: EXIT_NOT_FOUND, 409: EXIT_CONFLICT,
                   413: EXIT_USAGE}

DEFAULT_URL = "http://localhost:5000"


class CommandError(Exception):
    """Ends the command with `message` on stderr and exit code `code`."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@attrs.define
class Client:
    """The management API at `url`, through treq."""

    url: str
    timeout: float
    #: An `Authorization` header value, when the registry wants credentials.
    authorization: str | None = None

    async def call(self, method: str, path: str, body: object = None) -> object:
        kwargs: dict = {"timeout": self.timeout, "persistent": False}
        headers = {}
        if self.authorization is not None:
            headers["Authorization"] = self.authorization
        if body is not None:
            kwargs["data"] = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        kwargs["headers"] = headers
        target = self.url.rstrip("/") + "/api/v1" + path
        try:
            response = await treq.request(method, target, **kwargs)
            raw = await response.content()
        except (ConnectError, DNSLookupError, TimeoutError, ResponseNeverReceived) as e:
            raise CommandError(f"cannot reach {self.url}: {_reason(e)}", EXIT_UNREACHABLE) from e
        try:
            document = json.loads(raw) if raw else None
        except ValueError:
            raise CommandError(
                f"{method} {target} answered {response.code} with a body that is not JSON",
                EXIT_FAILED,
            ) from None
        if response.code >= 400:
            raise _api_error(response.code, document)
        return document


def _reason(e: Exception) -> str:
    if isinstance(e, ResponseNeverReceived):
        return "the connection closed before an answer"
    return str(e).strip().rstrip(".") or type(e).__name__


def _api_error(status: int, document: object) -> CommandError:
    error = document.get("error") if isinstance(document, dict) else None
    if not isinstance(error, dict):
        return CommandError(f"the server answered {status}", EXIT_FAILED)
    message = f"{error.get('code')}: {error.get('message')}"
    if error.get("field"):
        message += f" (field: {error['field']})"
    return CommandError(message, _EXIT_BY_STATUS.get(status, EXIT_FAILED))


def quote_name(path: str) -> str:
    """`path` (a repository name or base path) as it goes into the API's URLs.

    Repository names keep their '/'s in the URL; nothing else needs escaping.
    """
    return quote(path, safe="/")

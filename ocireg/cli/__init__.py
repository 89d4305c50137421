"""The `ocireg` command: the management API (/api/v1/) from a shell.

    ocireg [--url URL] [--user USER [--password-stdin]] [--json] [--timeout S]
           [--cacert FILE | --insecure] repo list|show|create|set|delete …
    ocireg version list NAME | show NAME N | diff NAME N M | delete NAME N
    ocireg rollback NAME N
    ocireg tag copy SRC:TAG DST[:TAG] | list NAME | delete NAME:TAG
    ocireg staging show|discard NAME
    ocireg distribution create|list|show|pin|unpin|delete …
    ocireg gc [--dry-run] | gc-history | scrub

The options go before or after the command. Human tables by default (times
local, with their zone), the API's JSON with `--json` (times in RFC 3339).
Errors are one line on stderr. The exit code says what happened (EXIT_* below).
"""

from ocireg.cli.client import (
    DEFAULT_URL,
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Client,
    CommandError,
)
from ocireg.cli.command import main, parser, run
from ocireg.cli.output import Output

__all__ = [
    "DEFAULT_URL", "EXIT_CONFLICT", "EXIT_FAILED", "EXIT_NOT_FOUND", "EXIT_OK",
    "EXIT_UNREACHABLE", "EXIT_USAGE", "Client", "CommandError", "Output", "main", "parser",
    "run",
]

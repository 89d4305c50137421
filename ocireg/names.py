"""Repository names and tags, validated by the distribution spec's grammar."""

from __future__ import annotations

import re

from ocireg.errors import NAME_INVALID, TAG_INVALID, RegistryError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")

#: Longest repository name we accept, in bytes (the spec lets registries cap it).
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    """Return `name` if it is a valid repository name, else raise NAME_INVALID."""
    if len(name.encode()) > MAX_NAME_LENGTH:
        raise RegistryError(
            NAME_INVALID,
            f"repository name is longer than {MAX_NAME_LENGTH} bytes",
            {"name": name[:300]},
        )
    # fullmatch: `$` would let a trailing newline through.
    if not _NAME.fullmatch(name):
        raise RegistryError(
            NAME_INVALID,
            "repository name must be lowercase path components of [a-z0-9] "
            "separated by '.', '_', '__' or '-', joined by '/'",
            {"name": name},
        )
    return name


def validate_tag(tag: str) -> str:
    """Return `tag` if it is a valid tag, else raise TAG_INVALID."""
    if not _TAG.fullmatch(tag):
        raise RegistryError(
            TAG_INVALID,
            "a tag is 1 to 128 characters of [a-zA-Z0-9_.-], not starting with '.' or '-'",
            {"tag": tag[:300]},
        )
    return tag

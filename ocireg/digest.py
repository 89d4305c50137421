"""Content digests: parsing, validation and hashing. Pure values, no I/O."""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

import attrs

from ocireg.errors import DIGEST_INVALID, RegistryError

#: The digest grammar of the OCI image spec.
_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")

#: Algorithms we can verify, and the length of their lowercase hex encoding.
_ALGORITHMS = {"sha256": 64, "sha512": 128}


class Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...

    def copy(self) -> Hasher: ...


@attrs.frozen(order=True)
class Digest:
    """A verified `algorithm:hex` content digest."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse `text`, raising DIGEST_INVALID for anything we cannot verify."""
        if len(text) > 256 or not _DIGEST.match(text):
            raise RegistryError(
                DIGEST_INVALID, f"invalid digest {text[:80]!r}", {"digest": text[:300]}
            )
        algorithm, encoded = text.split(":", 1)
        if algorithm not in _ALGORITHMS:
            raise RegistryError(
                DIGEST_INVALID,
                f"unsupported digest algorithm {algorithm!r}",
                {"digest": text, "supported": sorted(_ALGORITHMS)},
            )
        if len(encoded) != _ALGORITHMS[algorithm] or not re.fullmatch("[0-9a-f]+", encoded):
            raise RegistryError(
                DIGEST_INVALID,
                f"a {algorithm} digest is {_ALGORITHMS[algorithm]} lowercase hex characters",
                {"digest": text},
            )
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """The digest of `data`."""
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())


def new_hasher(algorithm: str = "sha256") -> Hasher:
    return hashlib.new(algorithm)


def is_digest(reference: str) -> bool:
    """Does `reference` look like a digest (rather than a tag)?"""
    return ":" in reference

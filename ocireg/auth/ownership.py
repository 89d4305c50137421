"""Upload sessions that belong to the user who opened them.

An upload's id carries a MAC of (a random id, the owner's name) under a
secret kept in the data directory, so any process sharing that directory can
tell whether a caller owns an upload without a column in the database:
another user's request for the same id finds no upload at all.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid as uuidlib

import attrs

_MAC_LENGTH = 24


@attrs.frozen
class UploadOwnership:
    secret: bytes = attrs.field(repr=False)

    def _mac(self, nonce: str, owner: str) -> str:
        message = f"{nonce}\0{owner}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:_MAC_LENGTH]

    def new_id(self, owner: str) -> str:
        """A fresh upload id that only `owner` ("" for anonymous) owns."""
        nonce = str(uuidlib.uuid4())
        return f"{nonce}-{self._mac(nonce, owner)}"

    def owns(self, upload_id: str, owner: str) -> bool:
        nonce, _, mac = upload_id.rpartition("-")
        if len(mac) != _MAC_LENGTH or not nonce:
            return False
        return hmac.compare_digest(mac, self._mac(nonce, owner))


def load_or_generate_secret(path: str) -> bytes:
    """The secret at `path`, made (mode 0600) on the first start. Blocking: call it in a thread."""
    try:
        with open(path, "rb") as f:
            secret = f.read()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(32))
        f.flush()
        os.fsync(f.fileno())
    try:
        # Two processes starting at once: the first link wins, the other reads it.
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
    with open(path, "rb") as f:
        return f.read()

"""Where the filesystem blob store keeps what, under its root.

`blobs/<algorithm>/<first two hex>/<hex>` holds each blob, `uploads/<uuid>`
each upload in progress, `quarantine/<algorithm>-<hex>` each blob that scrub
found corrupt. Two hex digits of fan-out keep directories small enough to
list.
"""

from __future__ import annotations

import os

import attrs

from ocireg.digest import Digest


@attrs.frozen
class Layout:
    """The paths of the blob store rooted at `root`."""

    root: str

    @property
    def uploads(self) -> str:
        return os.path.join(self.root, "uploads")

    @property
    def blobs(self) -> str:
        return os.path.join(self.root, "blobs")

    def upload(self, uuid: str) -> str:
        return os.path.join(self.uploads, uuid)

    def blob(self, digest: Digest) -> str:
        return os.path.join(self.blobs, digest.algorithm, digest.hex[:2], digest.hex)

    def blob_group(self, group: str) -> str:
        """The folder of `group`, `<algorithm>/<first two hex>`."""
        return os.path.join(self.blobs, group)

    def quarantine(self, digest: Digest) -> str:
        return os.path.join(self.root, "quarantine", f"{digest.algorithm}-{digest.hex}")

"""An upload's headers: where it is, what it holds, and a chunk's Content-Range."""

from __future__ import annotations

from ocireg.errors import SIZE_INVALID, UPLOAD_RANGE_INVALID, RegistryError


def upload_location(name: str, uuid: str) -> str:
    """The URL of upload `uuid` of `name`, where its next chunk or its completion goes."""
    return f"/v2/{name}/blobs/uploads/{uuid}"


def upload_range(size: int) -> str:
    """The `Range` header value for an upload holding `size` bytes (docker wants it bare)."""
    return f"0-{max(size - 1, 0)}"


def check_content_range(start: int, end: int, length: int | None) -> None:
    """A chunk's Content-Range must be ordered and agree with its Content-Length."""
    if end < start:
        raise RegistryError(
            UPLOAD_RANGE_INVALID, f"Content-Range end {end} is before its start {start}"
        )
    if length is not None and length != end - start + 1:
        raise RegistryError(
            SIZE_INVALID,
            f"Content-Range {start}-{end} says {end - start + 1} bytes, "
            f"Content-Length says {length}",
        )



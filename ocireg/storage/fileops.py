"""The blocking file operations of the filesystem blob store, run on its threads.

A full file system (ENOSPC, EDQUOT) fails an operation with STORAGE_FULL,
which the client is told about, instead of an unexpected error.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable
from typing import BinaryIO

from twisted.logger import Logger

from ocireg.digest import Hasher, new_hasher
from ocireg.errors import STORAGE_FULL, RegistryError

_log = Logger()

#: What a write to a full file system fails with.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)

#: sync_file_range(2)'s flag that starts writing a range back without waiting for it.
_SYNC_FILE_RANGE_WRITE = 2


def writeback_starter() -> Callable[[int, int, int], object]:
    """A function(fd, offset, length) that starts writing that range to disk, not waiting.

    Linux's sync_file_range (Python has no binding); elsewhere nothing. The
    commit's fsync then finds little left to write: without it, a big blob's
    dirty pages all wait for that one fsync, at the end of the push.
    """
    libc_name = ctypes.util.find_library("c")
    try:
        function = ctypes.CDLL(libc_name, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return lambda fd, offset, length: function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def space_checked(f: Callable, *args: object) -> object:
    """`f(*args)`, with a full file system's OSError turned into STORAGE_FULL."""
    try:
        return f(*args)
    except OSError as e:
        if e.errno not in _NO_SPACE:
            raise
        _log.warn("the data directory is out of space: {error}", error=str(e))
        raise RegistryError(STORAGE_FULL) from e


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove(path: str) -> None:
    """Remove the file at `path`, if it is there."""
    try:
        os.remove(path)
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def hash_file(f: BinaryIO, algorithm: str) -> Hasher:
    """A hasher of `algorithm` fed with the whole of `f`."""
    hasher = new_hasher(algorithm)
    f.seek(0)
    while chunk := f.read(1024 * 1024):
        hasher.update(chunk)
    return hasher

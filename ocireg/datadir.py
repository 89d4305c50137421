"""The data directory at start-up: created, then locked for the life of the process.

Two ocireg processes on one SQLite database would each keep a read cache
that only its own commits empty (see ocireg.cache): the second would serve
a moved tag's old digest for as long as it runs, and either one's garbage
collection would not see the other's uploads in flight. So an SQLite
process holds an exclusive `flock` on `data_dir/ocireg.lock`, and a second
one is refused at start-up, naming the PID that holds it.

With PostgreSQL, several processes (on one host, or on several hosts sharing
the directory) are the design: each holds a shared lock, which keeps out an
SQLite process (whose collection would delete the blobs of every version it
does not know of) and lets any number of PostgreSQL ones in. A filesystem
that cannot lock (ENOLCK on some network mounts) only gets a warning there;
SQLite cannot run on such a filesystem anyway (WAL needs shared memory).

Worker processes (`--workers`) never lock: their parent holds the lock for
them before it starts them, and they end when it does (see ocireg.workers).
The lock is an open file description's, so it goes when the process does,
however it ends; a stale PID in the file means nothing.
"""

from __future__ import annotations

import errno
import fcntl
import os

from twisted.logger import Logger

from ocireg.config import ConfigError

_log = Logger()

#: The lock file, in the data directory.
LOCK_FILE = "ocireg.lock"


def create_data_dir(path: str) -> None:
    """Create `path` (and its parents) if needed; a ConfigError naming data_dir if it cannot be."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"setting 'data_dir': cannot create {path!r}: {e.strerror or e}"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"setting 'data_dir': {path!r} is not writable")


class DataDirLock:
    """The lock this process holds on a data directory; `release` (or exit) lets it go."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    @classmethod
    def take(cls, data_dir: str, exclusive: bool) -> DataDirLock:
        """Lock `data_dir` (exclusive for SQLite, shared for PostgreSQL), or ConfigError.

        Never waits: a lock held by another process is a refusal at once.
        """
        path = os.path.join(data_dir, LOCK_FILE)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise ConfigError(
                f"setting 'data_dir': cannot open the lock file {path!r}: {e.strerror or e}"
            ) from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ConfigError(
                f"setting 'data_dir': {data_dir!r} is in use by another ocireg process "
                f"({holder}); "
                + ("the embedded SQLite database serves one process: stop the other, or "
                   "give this one another data_dir" if exclusive else
                   "it runs on SQLite, which keeps the directory to itself")
            ) from None
        except OSError as e:
            os.close(fd)
            if exclusive or e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise ConfigError(
                    f"setting 'data_dir': cannot lock {path!r}: {e.strerror or e}"
                ) from None
            _log.warn("cannot lock {path} ({error}): nothing keeps an ocireg on SQLite out "
                      "of this data directory", path=path, error=e.strerror)
            return cls(None)
        # Shared holders each write their PID: the last one written names one of them.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}{'' if exclusive else ' shared'}\n".encode(), 0)
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").split()
    except OSError:
        text = []
    if not text or not text[0].isdigit():
        return "PID unknown"
    if len(text) > 1 and text[1] == "shared":
        return f"PID {text[0]}, on PostgreSQL"
    return f"PID {text[0]}"

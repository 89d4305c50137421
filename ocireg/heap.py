"""Giving the memory a burst of uploads freed back to the system once it is over.

Upload bodies pass through the heap in read-sized chunks, allocated on the
reactor thread and freed on the blob threads. glibc's allocator keeps what
such a burst freed in its arenas, so without a trim the server's resident
memory stays up after the burst: eight concurrent 256 MiB uploads left
from 0 to 55 MiB more resident, by chance, and `malloc_trim(0)` brought each
back to where it was before (docs/performance.rst). So when the
last upload in flight ends, one trim runs, on a thread: it walks the heap
and holds the allocator's locks meanwhile, so it runs only once the uploads
since the last trim brought `TRIM_AFTER` bytes or more (small pushes free
little, and a trim after each would slow them).
Where the C library has no `malloc_trim` (musl, macOS), nothing is done.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from ocireg.api.observe import RequestRecord

_log = Logger()

#: Upload bytes received since the last trim below which none is worth its cost.
TRIM_AFTER = 64 * 1024 * 1024


def find_malloc_trim() -> Callable[[], object] | None:
    """The C library's `malloc_trim(0)`, or None where there is none."""
    try:
        # The symbols the process already has loaded: libc's among them.
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class HeapTrimmer:
    """A request observer: trims the heap once the last upload in flight has ended.

    `run_in_thread(f)` runs `f` off the reactor and gives a Deferred of its end;
    `trim` is what `find_malloc_trim` found (None: the observer does nothing).
    """

    def __init__(
        self,
        trim: Callable[[], object] | None,
        run_in_thread: Callable[[Callable[[], object]], Deferred],
    ) -> None:
        self._trim = trim
        self._run_in_thread = run_in_thread
        self._uploads = 0
        #: Upload bytes received since the last trim started.
        self._received = 0
        self._trimming = False
        self._again = False
        #: Trims run since start, for the tests and the curious.
        self.trims = 0

    def upload_started(self) -> None:
        self._uploads += 1

    def request_done(self, record: RequestRecord) -> None:
        if not record.upload:
            return
        self._uploads -= 1
        self._received += record.received
        if self._uploads == 0 and self._received >= TRIM_AFTER and self._trim is not None:
            self._start()

    def _start(self) -> None:
        if self._trimming:
            # A burst ended while the last one's trim ran: trim once more after it.
            self._again = True
            return
        self._trimming = True
        self._received = 0
        self.trims += 1
        done = self._run_in_thread(self._trim)
        done.addErrback(lambda failure: _log.failure("trimming the heap", failure))
        done.addBoth(self._ended)

    def _ended(self, _: object) -> None:
        self._trimming = False
        if self._again:
            self._again = False
            if self._uploads == 0 and self._received >= TRIM_AFTER:
                self._start()


def heap_trimmer(reactor, pool: ThreadPool) -> HeapTrimmer:
    """A `HeapTrimmer` of this C library's trim, run in `pool`."""
    return HeapTrimmer(find_malloc_trim(), lambda f: deferToThreadPool(reactor, pool, f))

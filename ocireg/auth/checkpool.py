"""The threads that run bcrypt: fewer than the CPUs, at a lower CPU priority than the reactor.

A password check at cost 10 holds a CPU for about 70 ms. With as many
checks at once as CPUs, a flood of guesses leaves the reactor thread
runnable but waiting for a CPU, and every pull in the process waits with
it (benchmarks/hostile.py, attack 6: docs/performance.rst). So checks run
in a pool of their own, never the one the reactor hands file work to,
with one CPU fewer than the process may use (at least one), and each of
its threads lowers its own priority (its nice value) when it starts, so
that the scheduler runs the reactor first whenever both want a CPU.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

_log = Logger()

#: How much lower than the process's a check thread's priority is: at nice 10
#: a thread weighs a tenth of one at nice 0, so it runs on a CPU the reactor
#: does not want, and is not shut out of one it does.
CHECK_NICE = 10
#: The highest nice value Linux has (the lowest priority).
_LOWEST = 19


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_threads(setting: int, cpus: int) -> int:
    """Checks run at once: `setting`, or when it is 0 one fewer than `cpus`, at least one."""
    return setting or max(1, cpus - 1)


def lower_priority(by: int) -> None:
    """Lower the calling thread's CPU priority (raise its nice value) by `by`.

    Linux keeps a nice value per thread, and a thread may raise its own
    without privileges; elsewhere the call would apply to the whole process,
    so it does nothing there.
    """
    if not sys.platform.startswith("linux") or by <= 0:
        return
    tid = threading.get_native_id()
    try:
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(_LOWEST, nice + by))
    except OSError as e:
        _log.warn("password checks run at the reactor's priority: {error}", error=str(e))


class CheckPool(ThreadPool):
    """A thread pool of at most `threads` threads, each `nice` below the process's priority."""

    def __init__(self, threads: int, nice: int = CHECK_NICE,
                 name: str = "ocireg-password-checks") -> None:
        super().__init__(1, threads, name)
        self.nice = nice

    def threadFactory(self, *, name: str, target: Callable[[], object]) -> threading.Thread:
        def lowered() -> None:
            lower_priority(self.nice)
            target()

        return threading.Thread(name=name, target=lowered)

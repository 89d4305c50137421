"""What the hot reads (manifest GET and HEAD, blob HEAD) found, kept between writes.

Pulls read the same few manifests and blobs over and over; each read is a
metadata transaction. `ReadCache` remembers their answers until the metadata
store reports a committed change, and then forgets everything: any write
(a push, a delete, a rollback, a pin, an expiry) may change what a name
serves, and telling which entries a write touched would repeat the domain's
logic. Writes are rare next to pulls, so dropping everything costs little.

A read that was under way while a change committed may carry the old
answer: `put` refuses it unless the cache's generation is still the one the
read started under.

Only for a store that reports every committed change of the data it serves.
The SQLite store is one process's and reports each commit. On PostgreSQL
several processes (workers, hosts) share the database: the store reports its
own commits and hears the others' through LISTEN/NOTIFY (see
`ocireg.db.pgchanges`), and `current` — the store's `catch_up` — first
takes in the notifications already arrived, then says whether it can have
missed one (its listening connection is down): the cache then neither answers
nor remembers, and it is emptied when listening resumes.

While it is down, what the cache held stays, for `stale`: a read that cannot
reach the database (PostgreSQL is down, say — the usual reason the listening
connection is down too) gets the answer kept from before, for at most
`stale_max_age` seconds after the cache stopped hearing of changes, rather
than a 503. Only answers kept before then: nothing is remembered meanwhile,
and the cache is emptied before it answers again. Another process may have
moved a tag meanwhile; a pull of what the registry knew a moment ago is
worth more than an error, and the bound says how old "a moment" may be.

What remains on PostgreSQL: another process's change can reach this one a
little after its COMMIT was answered (on one busy host: mostly already there,
at worst a few milliseconds later; see `ocireg.db.pgchanges`). A read here in
that window, of an answer kept from before, gets the old answer — as it would
have had it come a moment earlier. A read in this process after its own
commit always gets the new one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

V = TypeVar("V")

_log = Logger()


class ReadCache(Generic[V]):
    """At most `max_entries` answers holding at most `max_bytes`, least recently used out first.

    `current`, when given, is asked before each `get` and `put`; while it
    says False the cache neither answers nor remembers. After `suspend`, `stale`
    answers what was kept before, for `stale_max_age` seconds of `clock`
    (0: never).
    """

    def __init__(
        self,
        max_entries: int = 4096,
        max_bytes: int = 16 * 1024 * 1024,
        current: Callable[[], bool] | None = None,
        clock: IReactorTime | None = None,
        stale_max_age: float = 0.0,
    ) -> None:
        self._max_entries = max_entries
        self._current = current
        self._max_bytes = max_bytes
        self._clock = clock
        self._stale_max_age = stale_max_age if clock is not None else 0.0
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        #: Bumped by every invalidation; a read remembers it when it starts.
        self.generation = 0
        #: When the cache stopped hearing of changes, while it does not hear of them.
        self._suspended_at: float | None = None
        #: Stale answers given since then.
        self._stale_answers = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> V | None:
        if self._suspended_at is not None:
            return None
        if self._current is not None and not self._current():
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Hashable, value: V, size: int, generation: int) -> None:
        """Remember `value` (`size` bytes or so), read under `generation`, if still current."""
        if self._suspended_at is not None:
            return
        if self._current is not None and not self._current():
            return
        # After `current`: a change it has just heard of makes `generation` old.
        if generation != self.generation or size > self._max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._entries[key] = (value, size)
        self._bytes += size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped

    def invalidate(self) -> None:
        """Forget every answer: what the store holds has changed, or may have."""
        self._entries.clear()
        self._bytes = 0
        self.generation += 1
        if self._suspended_at is not None and self._stale_answers:
            _log.info(
                "served {count} answers kept from before the metadata database became "
                "unreachable; they are forgotten now",
                count=self._stale_answers,
            )
        self._suspended_at = None
        self._stale_answers = 0

    def suspend(self) -> None:
        """Changes may go unheard from now on: keep what is kept, for `stale`, and no more."""
        if self._suspended_at is None:
            self._suspended_at = self._clock.seconds() if self._clock is not None else 0.0
        # A read under way now may carry an answer that is already stale.
        self.generation += 1

    def stale(self, key: Hashable) -> V | None:
        """The answer kept for `key` from before `suspend`, while that is young enough."""
        if self._suspended_at is None or self._stale_max_age <= 0:
            return None
        if self._clock.seconds() - self._suspended_at > self._stale_max_age:
            if self._entries:
                _log.warn(
                    "no longer serving answers kept from before the metadata database became "
                    "unreachable: stale_cache_max_age ({age:g} s) has passed",
                    age=self._stale_max_age,
                )
                self._entries.clear()
                self._bytes = 0
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not self._stale_answers:
            _log.warn(
                "the metadata database cannot be reached: serving manifests and blob lookups "
                "as known before, for at most {age:g} s (stale_cache_max_age)",
                age=self._stale_max_age,
            )
        self._stale_answers += 1
        return entry[0]

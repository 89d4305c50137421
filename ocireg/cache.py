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

V = TypeVar("V")


class ReadCache(Generic[V]):
    """At most `max_entries` answers holding at most `max_bytes`, least recently used out first.

    `current`, when given, is asked before each `get` and `put`; while it
    says False the cache neither answers nor remembers.
    """

    def __init__(
        self,
        max_entries: int = 4096,
        max_bytes: int = 16 * 1024 * 1024,
        current: Callable[[], bool] | None = None,
    ) -> None:
        self._max_entries = max_entries
        self._current = current
        self._max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        #: Bumped by every invalidation; a read remembers it when it starts.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> V | None:
        if self._current is not None and not self._current():
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Hashable, value: V, size: int, generation: int) -> None:
        """Remember `value` (`size` bytes or so), read under `generation`, if still current."""
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
        """Forget every answer: what the store holds has changed."""
        self._entries.clear()
        self._bytes = 0
        self.generation += 1

"""Login attempts, counted per (user, client address) and per address, to slow down guessing.

The policy, as README.rst states it:

- A user from one address gets `attempts` failures within `window`
  seconds; further attempts for that user from that address are refused
  (429) until the oldest failure leaves the window. Nobody else is
  affected: not the same user elsewhere, not other users at that address.
- An address gets `address_attempts` failures (a higher limit) within the
  window, whatever the users; beyond that its attempts are slowed down to
  one per `window / address_attempts` seconds, never refused for it, so a
  client trying many users behind a shared address cannot lock the others
  out.
- An attempt counts from the moment it is admitted, before its password is
  checked, so parallel guesses cannot slip past the count. At most `queue`
  checks per address, and `queue_total` in all, wait for or run bcrypt;
  beyond that an attempt is refused at once.

Keys are keyed hashes of fixed size (an IPv6 client is its /64 prefix), so
what a client sends as a user name is never kept; entries expire with the
window and the table holds at most `capacity` of them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from array import array
from collections import OrderedDict

from twisted.internet.interfaces import IReactorTime


class Throttled(Exception):
    """A login refused without checking it; try again in `retry_after` seconds."""

    def __init__(self, retry_after: int, reason: str = "too many failed logins") -> None:
        super().__init__(f"{reason}; try again in {retry_after} s")
        self.retry_after = retry_after


class _Entry:
    """Recent failures (times, oldest first) and attempts being checked, of one key."""

    __slots__ = ("failures", "pending", "touched", "next_slot")

    def __init__(self) -> None:
        self.failures = array("d")
        self.pending = 0
        self.touched = 0.0
        self.next_slot = 0.0

    def recent(self, now: float, window: float) -> array:
        failures = self.failures
        while failures and failures[0] <= now - window:
            failures.pop(0)
        return failures


def client_of(address: str) -> str:
    """What counts as one client: the address, or for IPv6 its /64 (one host's usual share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Attempt:
    """An admitted login: wait `delay` seconds, check the password, then call `done`."""

    def __init__(self, throttle: LoginThrottle, keys: tuple[bytes, bytes],
                 entries: tuple[_Entry, _Entry], delay: float) -> None:
        self._throttle = throttle
        self._keys = keys
        self._entries = entries
        self.delay = delay
        self._done = False

    def done(self, ok: bool) -> None:
        """The password was checked: right (`ok`) or wrong."""
        if self._done:
            return
        self._done = True
        self._throttle._finished(self._keys, self._entries, ok)


class LoginThrottle:
    def __init__(
        self,
        clock: IReactorTime,
        attempts: int,
        window: float,
        address_attempts: int | None = None,
        queue: int = 4,
        queue_total: int = 32,
        capacity: int = 20_000,
    ) -> None:
        self._clock = clock
        self._attempts = attempts
        self._window = window
        self._address_attempts = address_attempts or 4 * attempts
        self._queue = queue
        self._queue_total = queue_total
        self._capacity = capacity
        #: Per process, so that a key says nothing outside it.
        self._secret = os.urandom(16)
        #: In order of last use, so that expired entries are at the front.
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._pending = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _key(self, *parts: str) -> bytes:
        h = hashlib.blake2b(digest_size=16, key=self._secret)
        for part in parts:
            encoded = part.encode("utf-8", "surrogatepass")
            h.update(len(encoded).to_bytes(4, "big"))
            h.update(encoded)
        return h.digest()

    def _entry(self, key: bytes, now: float) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        else:
            self._entries.move_to_end(key)
        entry.touched = now
        return entry

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry.touched > now - self._window or entry.pending:
                break
            del entries[key]
        while len(entries) > self._capacity:
            entries.popitem(last=False)

    def begin(self, user: str, address: str) -> Attempt:
        """Admit a login of `user` from `address`; Throttled if it may not be checked now."""
        now = self._clock.seconds()
        self._expire(now)
        client = client_of(address)
        keys = (self._key("user", user, client), self._key("address", client))
        pair, source = self._entry(keys[0], now), self._entry(keys[1], now)
        if self._pending >= self._queue_total:
            raise Throttled(1, "too many logins are being checked")
        if source.pending >= self._queue:
            raise Throttled(1, "too many logins from your address are being checked")
        failures = pair.recent(now, self._window)
        if len(failures) + pair.pending >= self._attempts:
            wait = failures[0] + self._window - now if failures else 1
            raise Throttled(max(1, int(wait + 0.999)))
        delay = 0.0
        if len(source.recent(now, self._window)) >= self._address_attempts:
            start = max(now, source.next_slot)
            source.next_slot = start + self._window / self._address_attempts
            delay = start - now
        pair.pending += 1
        source.pending += 1
        self._pending += 1
        self._expire(now)
        return Attempt(self, keys, (pair, source), delay)

    def _finished(self, keys: tuple[bytes, bytes], entries: tuple[_Entry, _Entry],
                  ok: bool) -> None:
        now = self._clock.seconds()
        self._pending -= 1
        pair, source = entries
        pair.pending -= 1
        source.pending -= 1
        if ok:
            # A typo or two before the right password count no more.
            del pair.failures[:]
            return
        for key, entry, limit in ((keys[0], pair, self._attempts),
                                  (keys[1], source, self._address_attempts)):
            # Back in the table if it was pushed out while the password was checked
            # (onto the entry that took its place, if one did).
            entry = self._entries.setdefault(key, entry)
            self._entries.move_to_end(key)
            entry.touched = now
            failures = entry.recent(now, self._window)
            failures.append(now)
            if len(failures) > limit:
                failures.pop(0)
        self._expire(now)

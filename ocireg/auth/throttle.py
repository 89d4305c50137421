"""Failed logins, counted per user and per client address, to slow down guessing.

After `attempts` failures within `window` seconds, further logins for that
user, or from that address, are refused without checking the password until
the oldest failure leaves the window. Counting per user stops a distributed
guess at one password; counting per address stops one client trying many
users. The tables are bounded, so a flood of names cannot grow them.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from twisted.internet.interfaces import IReactorTime


class Throttled(Exception):
    """Too many failed logins; try again in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after} s")
        self.retry_after = retry_after


class LoginThrottle:
    def __init__(
        self, clock: IReactorTime, attempts: int, window: float, capacity: int = 10_000
    ) -> None:
        self._clock = clock
        self._attempts = attempts
        self._window = window
        self._capacity = capacity
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def check(self, user: str, address: str) -> None:
        """Raise Throttled if `user` or `address` has failed too often lately."""
        now = self._clock.seconds()
        for key in (("user", user), ("address", address)):
            times = self._recent(key, now)
            if times is not None and len(times) >= self._attempts:
                raise Throttled(max(1, int(times[0] + self._window - now + 0.999)))

    def failed(self, user: str, address: str) -> None:
        now = self._clock.seconds()
        for key in (("user", user), ("address", address)):
            times = self._recent(key, now) or deque()
            times.append(now)
            self._failures[key] = times
            self._failures.move_to_end(key)
        while len(self._failures) > self._capacity:
            self._failures.popitem(last=False)

"""Users and their passwords, from an htpasswd file (bcrypt hashes only).

`parse_htpasswd` is pure: it turns the file's text into `Users`, refusing
any hash that is not bcrypt (MD5 `$apr1$`, `{SHA}`, crypt and plain text
are all too cheap to brute-force). `PasswordChecker` runs bcrypt in a
thread pool of its own (a `CheckPool`: fewer threads than CPUs, at a lower
priority), never on the reactor thread, and remembers recent successes
for a minute so that Basic credentials sent with every request of a push
cost one bcrypt, not hundreds. `HtpasswdWatcher` notices when the file
changes and reads it again, in a thread.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from collections import Counter, OrderedDict
from collections.abc import Callable

import attrs
import bcrypt
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

_log = Logger()

_BCRYPT_PREFIXES = (b"$2a$", b"$2b$", b"$2y$")
#: bcrypt reads this many bytes of a password and ignores the rest (so does htpasswd).
MAX_PASSWORD_BYTES = 72
#: Checked against when the user is unknown and the file has no hash to take
#: the cost of (made once, at import, cost 10).
_DUMMY_HASH = bcrypt.hashpw(b"no such user", bcrypt.gensalt(10))


class HtpasswdError(ValueError):
    """The htpasswd file cannot be used; the message says which line and why."""


@attrs.frozen
class Users:
    """User names and their bcrypt hashes."""

    hashes: tuple[tuple[str, bytes], ...] = attrs.field(default=(), repr=False)
    #: Checked against for an unknown user, at the cost most of the file's hashes
    #: have, so that an unknown user takes as long to refuse as a wrong password.
    dummy: bytes = attrs.field(default=_DUMMY_HASH, repr=False)

    def hash_of(self, user: str) -> bytes | None:
        for name, hashed in self.hashes:
            if name == user:
                return hashed
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.hashes)


def _kind(hashed: str) -> str:
    if hashed.startswith("$apr1$"):
        return "an Apache MD5 ($apr1$) hash"
    if hashed.startswith("{SHA}"):
        return "a SHA-1 ({SHA}) hash"
    if hashed.startswith(("$1$", "$5$", "$6$")):
        return "a crypt(3) MD5/SHA hash"
    if len(hashed) == 13:
        return "a DES crypt hash or a plain-text password"
    return "not a bcrypt hash (perhaps a plain-text password)"


def cost_of(hashed: bytes) -> int:
    """The cost (log2 of the rounds) of a bcrypt hash: `$2b$12$...` is 12."""
    return int(hashed[4:6])


@functools.lru_cache(maxsize=4)
def dummy_hash(cost: int) -> bytes:
    """A hash of nothing anyone types, at `cost` (slow: call it in a thread)."""
    return bcrypt.hashpw(b"no such user", bcrypt.gensalt(cost))


def parse_htpasswd(text: str, source: str = "htpasswd") -> Users:
    """The users of an htpasswd file's text; HtpasswdError naming the first bad line.

    Slow when the file's hashes cost more than the last file's (a dummy hash
    is made at that cost): call it in a thread.
    """
    found: dict[str, bytes] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed:
            raise HtpasswdError(f"{source} line {number}: expected user:hash")
        encoded = hashed.encode("ascii", "replace")
        if (not encoded.startswith(_BCRYPT_PREFIXES) or len(encoded) != 60
                or not encoded[4:6].isdigit() or not 4 <= cost_of(encoded) <= 31):
            raise HtpasswdError(
                f"{source} line {number}: the password of user {user!r} is {_kind(hashed)}; "
                "only bcrypt hashes are accepted (htpasswd -B)"
            )
        if user in found:
            raise HtpasswdError(f"{source} line {number}: user {user!r} appears twice")
        found[user] = encoded
    if not found:
        return Users()
    # The most common cost (the higher one on a tie): most users' wrong passwords take that long.
    costs = Counter(cost_of(h) for h in found.values())
    cost = max(costs, key=lambda c: (costs[c], c))
    return Users(tuple(found.items()), dummy_hash(cost))


def read_htpasswd(path: str) -> Users:
    """Read and parse the file at `path` (blocking: call it in a thread)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise HtpasswdError(f"cannot read htpasswd file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise HtpasswdError(f"htpasswd file {path} is not UTF-8 text") from None
    return parse_htpasswd(text, path)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        # bcrypt 5 raises on longer passwords, where htpasswd and older bcrypts
        # silently used the first 72 bytes: accept what htpasswd accepts.
        return bcrypt.checkpw(password[:MAX_PASSWORD_BYTES], hashed)
    except ValueError:
        return False


class PasswordChecker:
    """Checks passwords against `users()` in `pool`; remembers successes for `remember` seconds."""

    def __init__(
        self,
        users: Callable[[], Users],
        reactor: IReactorTime,
        pool: ThreadPool,
        remember: float = 60.0,
        capacity: int = 1000,
    ) -> None:
        self._users = users
        self._reactor = reactor
        self._pool = pool
        self._remember = remember
        self._capacity = capacity
        #: A key per process, so that the remembered keys say nothing outside it.
        self._key = os.urandom(32)
        #: HMAC of (user, password, hash) -> when the success is forgotten.
        self._recent: OrderedDict[bytes, float] = OrderedDict()
        #: HMAC of (user, password, hash) -> those waiting for that check, under way.
        self._checking: dict[bytes, list[Deferred]] = {}

    def _remembered_key(self, user: str, password: str, hashed: bytes) -> bytes:
        message = b"\0".join((user.encode(), password.encode(), hashed))
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def remembered(self, user: str, password: str) -> bool:
        """Was `password` found right for `user` lately? (No bcrypt: cheap to ask.)"""
        hashed = self._users().hash_of(user)
        if hashed is None:
            return False
        key = self._remembered_key(user, password, hashed)
        return self._recent.get(key, 0.0) > self._reactor.seconds()

    def pending(self, user: str, password: str) -> Deferred | None:
        """A Deferred of the outcome of the same check already under way, else None.

        A client sends its credentials with each of its parallel requests
        (containers/image uploads six layers at once): they share one bcrypt
        rather than each queueing its own behind the login bounds.
        """
        users = self._users()
        key = self._remembered_key(user, password, users.hash_of(user) or users.dummy)
        waiters = self._checking.get(key)
        if waiters is None:
            return None
        shared: Deferred = Deferred()
        waiters.append(shared)
        return shared

    async def check(self, user: str, password: str) -> bool:
        """Is `password` the password of `user`? Takes as long for unknown users."""
        users = self._users()
        hashed = users.hash_of(user)
        key = self._remembered_key(user, password, hashed or users.dummy)
        now = self._reactor.seconds()
        if hashed is not None and self._recent.get(key, 0.0) > now:
            return True
        waiters: list[Deferred] | None = None
        if key not in self._checking:
            waiters = self._checking[key] = []
        try:
            ok = await deferToThreadPool(
                self._reactor, self._pool, _checkpw, password.encode(), hashed or users.dummy
            )
        except BaseException as e:
            if waiters is not None:
                del self._checking[key]
                for waiter in waiters:
                    waiter.errback(e)
            raise
        ok = ok and hashed is not None
        if ok:
            self._recent[key] = self._reactor.seconds() + self._remember
            self._recent.move_to_end(key)
            while len(self._recent) > self._capacity:
                self._recent.popitem(last=False)
        if waiters is not None:
            del self._checking[key]
            for waiter in waiters:
                waiter.callback(ok)
        return ok


class HtpasswdWatcher:
    """Reads `path` again (in `pool`) whenever it changes, and hands the users to `changed`.

    A file that no longer parses is logged and ignored: the users read last stay.
    """

    def __init__(
        self,
        path: str,
        users: Users,
        changed: Callable[[Users], object],
        reactor,
        pool: ThreadPool,
        interval: float = 2.0,
    ) -> None:
        self.path = path
        self._changed = changed
        self._reactor = reactor
        self._pool = pool
        self._interval = interval
        self._stamp: tuple[int, int, int] | None = None
        self._call = LoopingCall(self.poll)
        self._call.clock = reactor
        self.users = users

    def start(self, stamp: tuple[int, int, int] | None) -> None:
        """Watch for changes since the file looked like `stamp` (from `load_htpasswd`)."""
        self._stamp = stamp
        self._call.start(self._interval, now=False).addErrback(
            lambda f: _log.failure("watching the htpasswd file", f)
        )

    def stop(self) -> None:
        if self._call.running:
            self._call.stop()

    def poll(self) -> Deferred:
        """Check the file once; read it again if its size, time or inode changed."""
        return Deferred.fromCoroutine(self._poll())

    async def _poll(self) -> None:
        stamp = await deferToThreadPool(self._reactor, self._pool, _stamp, self.path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        await self.reload()

    async def reload(self) -> str:
        """Read the file now; what happened, in a few words."""
        try:
            users = await deferToThreadPool(self._reactor, self._pool, read_htpasswd, self.path)
        except HtpasswdError as e:
            _log.error("htpasswd file not reloaded, the users read before stay: {error}",
                       error=str(e))
            return f"not reloaded: {e}"
        self.users = users
        self._changed(users)
        _log.info("read {n} users from {path}", n=len(users.hashes), path=self.path)
        return f"{len(users.hashes)} users"


async def load_htpasswd(path: str, reactor, pool: ThreadPool):
    """The users of the file at `path`, and how it looked when read (both in `pool`)."""

    def load() -> tuple[Users, tuple[int, int, int] | None]:
        stamp = _stamp(path)
        return read_htpasswd(path), stamp

    return await deferToThreadPool(reactor, pool, load)


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)

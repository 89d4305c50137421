"""A loopback TCP proxy that a test can take down and bring back.

ocireg is pointed at the proxy instead of at PostgreSQL. `down()` closes the
listening socket and every proxied connection, so to ocireg the database is
gone (connections reset, new ones refused) without touching the machine's
shared PostgreSQL server; `up()` listens again on the same port.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading

#: SO_LINGER on, zero seconds: close() sends RST.
_RESET = struct.pack("ii", 1, 0)


class TCPProxy:
    """Forwards 127.0.0.1:`port` to `target`, on a thread of its own."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tcp-proxy", daemon=True)

    def start(self) -> TCPProxy:
        self.up()
        self._thread.start()
        return self

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        with self._lock:
            self._listener = listener
            self._selector.register(listener, selectors.EVENT_READ)

    def down(self) -> None:
        """Refuse new connections and reset every open one."""
        with self._lock:
            if self._listener is not None:
                self._selector.unregister(self._listener)
                self._listener.close()
                self._listener = None
            for sock in list(self._pairs):
                self._close(sock)

    def stop(self) -> None:
        self._stop.set()
        self.down()
        self._thread.join(10)

    def _close(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        for s in (sock, peer):
            if s is None:
                continue
            self._pairs.pop(s, None)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                # RST rather than FIN: a database that vanished, not one that said goodbye.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            except OSError:
                pass
            s.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if not self._selector.get_map():
                    events = []
                else:
                    events = self._selector.select(timeout=0)
            if not events:
                self._stop.wait(0.002)
                continue
            with self._lock:
                for key, _ in events:
                    sock = key.fileobj
                    if sock is self._listener:
                        self._accept()
                    elif sock in self._pairs:
                        self._forward(sock)

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for s in (client, server):
            s.setblocking(False)
            self._selector.register(s, selectors.EVENT_READ)
        self._pairs[client] = server
        self._pairs[server] = client

    def _forward(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(sock)
            return
        try:
            self._pairs[sock].sendall(data)
        except BlockingIOError:
            # Loopback buffers are large; a full one means a wedged peer: drop both.
            self._close(sock)
        except OSError:
            self._close(sock)

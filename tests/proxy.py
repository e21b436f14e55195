"""A loopback TCP proxy a test can cut or stall, to take a real server away mid-conversation."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from urllib.parse import urlsplit, urlunsplit


class TcpProxy:
    """Forward 127.0.0.1:<port> to a real server until `cut()` drops every connection.

    `cut_on` cuts when the client sends given bytes (a command's name: the moment it is sent).
    `stall()` turns it into a black hole instead: connections stay open (and new ones are
    accepted) but nothing is read or forwarded any more, as when packets to a server are
    dropped. Stalled from the start, it is a server that accepts TCP and never answers.
    """

    def __init__(
        self,
        target_port: int,
        *,
        cut_after_bytes: int | None = None,
        stall_after_bytes: int | None = None,
        cut_on: bytes | None = None,
    ) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._cut_after = cut_after_bytes
        self._stall_after = stall_after_bytes
        self._cut_on = cut_on
        self._forwarded = 0
        self._stop = threading.Event()
        self._stalled = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url_for(self, url: str) -> str:
        """Return `url` (credentials, path and all) pointed at this proxy instead."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        try:
            # A cut() racing this thread's start may have closed both sockets already.
            selector.register(client, selectors.EVENT_READ, server)
            selector.register(server, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                if self._stalled.is_set():
                    self._stop.wait(0.2)  # leave the bytes in the kernel's buffers
                    continue
                for key, _ in selector.select(timeout=0.2):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    if key.fileobj is client and self._over_budget(data):
                        return
                    if not self._stalled.is_set():
                        key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            selector.close()

    def _over_budget(self, data: bytes) -> bool:
        """Count bytes from the client; cut or stall once a budget is spent (True: stop).

        `cut_on` cuts (and drops the bytes) as soon as the client sends those bytes, say a
        Redis command's name, so a connection can die exactly at one step of a protocol.
        """
        if self._cut_on is not None and self._cut_on in data:
            self.cut()
            return True
        self._forwarded += len(data)
        if self._cut_after is not None and self._forwarded > self._cut_after:
            self.cut()
            return True
        if self._stall_after is not None and self._forwarded > self._stall_after:
            self.stall()  # these bytes are dropped, as a black hole drops them
        return False

    def stall(self) -> None:
        """Stop reading and forwarding in both directions; keep every connection open."""
        self._stalled.set()

    def cut(self) -> None:
        """Drop every connection and stop accepting new ones."""
        self._stop.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [*sockets, self._listener]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

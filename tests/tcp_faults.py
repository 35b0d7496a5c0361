"""Real network faults between the server and its database, on loopback.

`DatabaseProxy` forwards a port to the test database, so an app can be built through it and
then lose its database for real: `hang()` makes every new connection be accepted and never
answered (a frozen server or a black-holing firewall), `refuse()` closes the port (a stopped
server). `silent_port()` is a port that accepts and never answers, from the start.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from sqlalchemy.engine import make_url


def free_port() -> int:
    """A loopback port nothing listens on (connecting to it is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_address(url: str, host: str, port: int) -> str:
    """`url` (its database, user, options) at another host and port."""
    return make_url(url).set(host=host, port=port).render_as_string(hide_password=False)


class DatabaseProxy:
    """A loopback TCP forwarder to `target` that a test can make hang or refuse."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._hanging = False
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="db-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._sockets.append(client)
                if self._hanging:
                    continue  # accepted, and never a byte back
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets.append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def _drop_connections(self) -> None:
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()

    def hang(self) -> None:
        """From now on the database accepts connections and never answers; open ones are cut."""
        self._hanging = True
        self._drop_connections()

    def refuse(self) -> None:
        """From now on nothing listens: connections are refused; open ones are cut."""
        self._closed = True
        self._listener.close()
        self._thread.join(timeout=5)
        self._drop_connections()

    def close(self) -> None:
        if not self._closed:
            self.refuse()
        self._drop_connections()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for s in (source, sink):
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hanging database)."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        yield listener.getsockname()[1]

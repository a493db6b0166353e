"""A TCP forwarder that caps what each connection receives from the server at a fixed rate: a stand-in for a
source whose every connection is slow for a reason of its own (a Progress SQL server process per connection,
reading its database one row at a time on cores of its own, or a WAN link per session), not for lack of CPU on
this machine.  Used by the partitioned-extraction benchmark (bench/partitioned.py) to show what N connections buy
when one connection is the limit; the forwarder itself copies bytes and sleeps (a few % of one core).

    with ThrottledForwarder("127.0.0.1", 5432, bytes_per_second=8 * 2**20) as fwd:
        ...  # connect to 127.0.0.1:fwd.port instead of 5432

Each connection gets its own budget: N connections together receive up to N times the rate, as N server
processes would send.  Client-to-server bytes (the queries) are not limited.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from types import TracebackType

CHUNK = 64 * 1024
BURST = 256 * 1024


class ThrottledForwarder:
    def __init__(self, upstream_host: str, upstream_port: int, *, bytes_per_second: float,
                 listen_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.rate = float(bytes_per_second)
        self._server = socket.create_server((listen_host, 0))
        self.host, self.port = self._server.getsockname()[:2]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.bytes_down = 0  # server -> client, all connections

    def __enter__(self) -> ThrottledForwarder:
        t = threading.Thread(target=self._accept, name="throttle-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            for src, dst, limited in ((client, server, False), (server, client, True)):
                threading.Thread(target=self._pipe, args=(src, dst, limited), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, limited: bool) -> None:
        # a token bucket: the rate on average, bursts of at most BURST bytes (an idle connection saves no more)
        tokens, last = float(BURST), time.monotonic()
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                dst.sendall(data)
                if limited:
                    self.bytes_down += len(data)
                    now = time.monotonic()
                    tokens = min(float(BURST), tokens + (now - last) * self.rate) - len(data)
                    last = now
                    if tokens < 0:
                        time.sleep(-tokens / self.rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

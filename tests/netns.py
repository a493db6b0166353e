"""Several hosts on this machine: Linux network namespaces joined to the root namespace by veth pairs, and a TCP
forwarder in the root namespace (PostgreSQL listens on 127.0.0.1 only and is not reconfigured).

Layout (``hosts(n)``): host ``i`` is the namespace ``cbm<pid>h<i>``, its own ``lo`` up, linked to the root namespace
by the veth pair ``cbm<pid>h<i>r`` (root side, ``10.213.<b+i>.1/24``) / ``cbm<pid>h<i>n`` (host side,
``10.213.<b+i>.2/24``), with its default route through the root side.  The root namespace plays the server
machine: its address on host 0's link, ``10.213.<b>.1`` (``Network.server``), is reachable from every host
(through each host's default route; the root namespace is the destination, nothing is routed beyond it), and the
luigid and the forwarder to 127.0.0.1:5432 listen there.  Names and subnets are unique per test run; ``hosts()``
removes the namespaces (and with them the veth pairs) on exit, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def netns_problem() -> str | None:
    """Why namespaces cannot be made here (no iproute2, not root, no permission), or None when they can."""
    name = f"cbm{os.getpid()}probe"
    try:
        r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return "iproute2 (the ip command) is not installed: apt-get install iproute2"
    if r.returncode != 0:
        return f"`ip netns add` is not permitted here ({r.stderr.strip()}): this test needs root and iproute2"
    ip("netns", "del", name, check=False)
    return None


@dataclass(frozen=True)
class Host:
    """One worker host: its namespace, its address, and its way out (the root side of its veth pair)."""

    netns: str
    address: str
    gateway: str

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass(frozen=True)
class Network:
    hosts: tuple[Host, ...]
    server: str  # the root namespace's address every host reaches (luigid, the PostgreSQL forwarder)


def _used_third_octets() -> set[int]:
    text = ip("-4", "-o", "addr").stdout + ip("-4", "route").stdout
    return {int(m) for m in re.findall(r"\b10\.213\.(\d+)\.", text)}


def _free_base(n: int) -> int:
    """A first third octet b with 10.213.b..b+n-1 unused on this machine (started from the pid: two runs at
    once rarely pick the same)."""
    used = _used_third_octets()
    span = 250 - n
    start = (os.getpid() * 7) % span
    for k in range(span):
        b = 1 + (start + k) % span
        if not used & set(range(b, b + n)):
            return b
    raise RuntimeError("no free 10.213.x.0/24 subnets left for the test's hosts")


def _remove(names: Sequence[str]) -> None:
    for name in names:
        ip("netns", "del", name, check=False)  # its veth end goes with it, and so the pair
        ip("link", "del", f"{name}r", check=False)  # in case the namespace was never made


@contextlib.contextmanager
def hosts(n: int) -> Iterator[Network]:
    tag = f"cbm{os.getpid()}"
    names = [f"{tag}h{i}" for i in range(n)]
    _remove(names)  # a crashed earlier run of the same pid
    try:
        base = _free_base(n)
        made = []
        for i, name in enumerate(names):
            net = f"10.213.{base + i}"
            root_if, host_if = f"{name}r", f"{name}n"
            ip("netns", "add", name)
            ip("link", "set", "lo", "up", netns=name)
            ip("link", "add", root_if, "type", "veth", "peer", "name", host_if)
            ip("link", "set", host_if, "netns", name)
            ip("addr", "add", f"{net}.1/24", "dev", root_if)
            ip("link", "set", root_if, "up")
            ip("addr", "add", f"{net}.2/24", "dev", host_if, netns=name)
            ip("link", "set", host_if, "up", netns=name)
            ip("route", "add", "default", "via", f"{net}.1", netns=name)
            made.append(Host(name, f"{net}.2", f"{net}.1"))
        yield Network(tuple(made), server=made[0].gateway)
    finally:
        _remove(names)


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class Forwarder:
    """TCP forwarder ``listen`` -> ``upstream``: an accepting thread, and two threads per connection (one per
    direction).  Each side's EOF is passed on at once (shutdown), so a client that disconnects ends its server
    connection with it; an error on either side closes both.

    ``hung_up``: the local ports of the upstream connections whose client has closed its side (for PostgreSQL,
    ``pg_stat_activity.client_port`` of a backend whose client is gone, which may still be listed while it exits).
    """

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._server = socket.create_server(listen, backlog=128)
        self.address: tuple[str, int] = self._server.getsockname()[:2]
        self._open: set[socket.socket] = set()
        self.hung_up: set[int] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, name=f"forward-{self.address[1]}", daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # the listening socket was closed: stop
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            port = server.getsockname()[1]
            self.hung_up.discard(port)  # a port used again
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed:
                    client.close()
                    server.close()
                    return
                self._open.update((client, server))
            left = [2]  # directions still open; the last one to end closes both sockets
            for a, b, hangup in ((client, server, port), (server, client, None)):
                threading.Thread(target=self._pump, args=(a, b, left, hangup), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, left: list[int], hangup: int | None) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            if hangup is not None:
                self.hung_up.add(hangup)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        except OSError:  # a reset, or the other direction closed both: end both directions
            if hangup is not None:
                self.hung_up.add(hangup)
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        with self._lock:
            left[0] -= 1
            if left[0] == 0:
                for s in (src, dst):
                    self._open.discard(s)
                    s.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close() alone does not)
        self._server.close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Forwarder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""A TCP proxy that tests put between a client and a real server on loopback to break the link on cue.

    proxy = FaultProxy(target_port).start()      # clients connect to proxy.port instead
    proxy.stall()         # both ways: bytes stop, sockets stay open (a pulled cable, a half-open link)
    proxy.stall("up")     # client -> server only ("down" is server -> client)
    proxy.slow(latency_s=0.2, bytes_per_s=2000)   # every chunk waits; combinable with the others
    proxy.drop()          # close every current connection, both sides (a router reboot)
    proxy.blackhole()     # new connections are accepted and then nothing: no bytes, no close
    proxy.refuse()        # new connections are closed at once (the server's host is up, the port is not)
    proxy.heal()          # pass everything again (held bytes flow on, in order)

Every switch takes effect at once, from any thread. Nothing in here is random; the only waits are
the slow link's per-chunk delays, through `delay` (injectable, so a unit test can see them without
timing anything). Tests wait on `wait_until(predicate)`, which wakes on every change of `stats`.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

DIRECTIONS = ("up", "down")
CHUNK = 65536


@dataclass
class Stats:
    accepted: int = 0          # client connections the proxy took
    upstream: int = 0          # of those, connected through to the server
    closed: int = 0            # links closed, by either end or by drop()
    forwarded: dict = field(default_factory=lambda: {d: 0 for d in DIRECTIONS})  # bytes
    held: dict = field(default_factory=lambda: {d: 0 for d in DIRECTIONS})       # chunks held back at a stall
    delays: list = field(default_factory=list)  # slow-link delays applied, seconds


class _Link:
    def __init__(self, client: socket.socket, server: socket.socket | None):
        self.client, self.server = client, server
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()
        for s in (self.client, self.server):
            if s is None:
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked in recv
            except OSError:
                pass
            s.close()


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", *,
                 delay: Callable[[threading.Event, float], None] | None = None):
        self.target = (target_host, target_port)
        self.stats = Stats()
        self._cond = threading.Condition()
        self._open = {d: True for d in DIRECTIONS}
        self._new = "pass"  # what happens to new connections: pass, blackhole, refuse
        self._latency_s = 0.0
        self._bytes_per_s: float | None = None
        self._delay = delay or (lambda closed, seconds: closed.wait(seconds))
        self._links: set[_Link] = set()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.host, self.port = self._listener.getsockname()
        self._stopped = False

    # ----- switches -------------------------------------------------------------------

    def heal(self) -> None:
        with self._cond:
            self._open = {d: True for d in DIRECTIONS}
            self._new, self._latency_s, self._bytes_per_s = "pass", 0.0, None
            self._cond.notify_all()

    def stall(self, direction: str = "both") -> None:
        with self._cond:
            for d in DIRECTIONS if direction == "both" else (direction,):
                self._open[d] = False

    def slow(self, latency_s: float = 0.0, bytes_per_s: float | None = None) -> None:
        with self._cond:
            self._latency_s, self._bytes_per_s = latency_s, bytes_per_s

    def blackhole(self) -> None:
        with self._cond:
            self._new = "blackhole"

    def refuse(self) -> None:
        with self._cond:
            self._new = "refuse"

    def drop(self) -> None:
        with self._cond:
            links, self._links = list(self._links), set()
        for link in links:
            self._closed(link)

    # ----- observing ------------------------------------------------------------------

    @property
    def active(self) -> int:
        with self._cond:
            return len(self._links)

    def wait_until(self, predicate: Callable[[Stats], object], timeout: float = 10.0, what: str = "proxy state"):
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.stats), timeout):
                raise AssertionError(f"gave up waiting for {what}; proxy stats: {self.stats}")
            return predicate(self.stats)

    # ----- running --------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        self._listener.listen(64)
        threading.Thread(target=self._accept, daemon=True, name=f"proxy-{self.port}").start()
        return self

    def close(self) -> None:
        self._stopped = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._listener.close()
        self.drop()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._cond:
                self.stats.accepted += 1
                new = self._new
                self._cond.notify_all()
            if new == "refuse":
                self._closed(_Link(client, None))
            elif new == "blackhole":
                self._track(_Link(client, None))
            else:
                threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            self._closed(_Link(client, None))  # the server is down: the client sees its connection close
            return
        server.settimeout(None)
        link = _Link(client, server)
        with self._cond:
            self.stats.upstream += 1
        self._track(link)
        for direction, src, dst in (("up", client, server), ("down", server, client)):
            threading.Thread(target=self._pump, args=(link, direction, src, dst), daemon=True).start()

    def _track(self, link: _Link) -> None:
        with self._cond:
            self._links.add(link)
            self._cond.notify_all()

    def _closed(self, link: _Link) -> None:
        if link.closed.is_set():
            return
        link.close()
        with self._cond:
            self._links.discard(link)
            self.stats.closed += 1
            self._cond.notify_all()

    def _pump(self, link: _Link, direction: str, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(CHUNK)
                # An end closing is held back at a stall too: a pulled cable carries no FIN either.
                if not self._gate(link, direction):
                    return
                if not data:
                    break
                self._slow(link, len(data))
                dst.sendall(data)
                with self._cond:
                    self.stats.forwarded[direction] += len(data)
                    self._cond.notify_all()
        except OSError:
            pass
        self._closed(link)

    def _gate(self, link: _Link, direction: str) -> bool:
        """Wait while `direction` is stalled; False when the link was closed meanwhile."""
        with self._cond:
            if not self._open[direction]:
                self.stats.held[direction] += 1
                self._cond.notify_all()
            self._cond.wait_for(lambda: self._open[direction] or link.closed.is_set())
            return not link.closed.is_set()

    def _slow(self, link: _Link, n: int) -> None:
        with self._cond:
            seconds = self._latency_s + (n / self._bytes_per_s if self._bytes_per_s else 0.0)
            if seconds:
                self.stats.delays.append(seconds)
        if seconds:
            self._delay(link.closed, seconds)


class EchoServer:
    """A loopback TCP server that echoes, for the proxy's own tests; `received` holds every byte it got."""

    def __init__(self):
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._cond = threading.Condition()
        self.received = b""
        self.connections = 0
        self.eofs = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._cond:
                self.connections += 1
                self._cond.notify_all()
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(CHUNK):
                    with self._cond:
                        self.received += data
                        self._cond.notify_all()
                    conn.sendall(data)
            except OSError:
                pass
        with self._cond:
            self.eofs += 1
            self._cond.notify_all()

    def wait_until(self, predicate, timeout: float = 10.0, what: str = "echo server state"):
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self), timeout):
                raise AssertionError(f"gave up waiting for {what}")

    def close(self) -> None:
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()


def recv_exactly(sock: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        chunk = sock.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out

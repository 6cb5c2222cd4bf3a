"""The fault-injecting proxy itself, against a loopback echo server: each fault does what it says."""
from __future__ import annotations

import socket

import pytest

from tests.faultproxy import EchoServer, FaultProxy, recv_exactly


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo):
    p = FaultProxy(echo.port).start()
    yield p
    p.close()


def connect(proxy) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=10)


def test_passes_bytes_both_ways(proxy, echo):
    with connect(proxy) as c:
        c.sendall(b"hello")
        assert recv_exactly(c, 5) == b"hello"
    proxy.wait_until(lambda s: s.forwarded == {"up": 5, "down": 5}, what="the count of bytes forwarded")


def test_drop_closes_both_sides(proxy, echo):
    with connect(proxy) as c:
        c.sendall(b"x")
        assert recv_exactly(c, 1) == b"x"
        proxy.drop()
        assert c.recv(10) == b""
        echo.wait_until(lambda e: e.eofs == 1, what="the server seeing the close")
    assert proxy.active == 0


def test_stall_holds_bytes_and_keeps_the_link_open_until_healed(proxy, echo):
    with connect(proxy) as c:
        c.sendall(b"a")
        assert recv_exactly(c, 1) == b"a"
        proxy.stall()
        c.sendall(b"held")
        proxy.wait_until(lambda s: s.held["up"] == 1, what="the chunk held at the stall")
        assert echo.received == b"a" and proxy.active == 1
        proxy.heal()
        assert recv_exactly(c, 4) == b"held"


def test_a_stalled_link_hides_the_close_as_a_pulled_cable_does(proxy, echo):
    c = connect(proxy)
    c.sendall(b"a")
    assert recv_exactly(c, 1) == b"a"
    proxy.stall()
    c.close()
    proxy.wait_until(lambda s: s.held["up"] == 1, what="the close held at the stall")
    assert echo.eofs == 0 and proxy.active == 1  # half-open: the server still believes in the client
    proxy.heal()
    echo.wait_until(lambda e: e.eofs == 1, what="the close delivered after healing")


def test_stall_of_one_direction_lets_the_other_flow(proxy, echo):
    with connect(proxy) as c:
        proxy.stall("down")
        c.sendall(b"one-way")
        echo.wait_until(lambda e: e.received == b"one-way", what="bytes upstream")
        proxy.wait_until(lambda s: s.held["down"] == 1, what="the echo held downstream")
        proxy.heal()
        assert recv_exactly(c, 7) == b"one-way"


def test_slow_link_delays_each_chunk_by_latency_and_size():
    seen = []
    echo = EchoServer()
    proxy = FaultProxy(echo.port, delay=lambda closed, s: seen.append(s)).start()
    try:
        proxy.slow(latency_s=0.25, bytes_per_s=100)
        with connect(proxy) as c:
            c.sendall(b"x" * 50)
            assert recv_exactly(c, 50) == b"x" * 50
        # Each direction's chunks add up to 50 bytes: 0.5 s of bandwidth plus 0.25 s per chunk.
        assert sum(seen) == pytest.approx(2 * 0.5 + 0.25 * len(seen)) and len(seen) >= 2
    finally:
        proxy.close()
        echo.close()


def test_blackhole_accepts_new_connections_and_says_nothing(proxy, echo):
    with connect(proxy) as live:
        proxy.wait_until(lambda s: s.upstream == 1, what="the first connection through")
        proxy.blackhole()
        with connect(proxy) as dead:
            dead.sendall(b"anyone?")
            proxy.wait_until(lambda s: s.accepted == 2, what="the second connection")
            live.sendall(b"still")  # connections from before keep working
            assert recv_exactly(live, 5) == b"still"
            assert echo.connections == 1 and proxy.stats.upstream == 1
            dead.settimeout(0)
            with pytest.raises(BlockingIOError):
                dead.recv(10)  # no bytes and no close: the client must time out by itself
        proxy.heal()
        with connect(proxy) as fresh:
            fresh.sendall(b"ok")
            assert recv_exactly(fresh, 2) == b"ok"


def test_refuse_closes_new_connections_at_once(proxy, echo):
    proxy.refuse()
    with connect(proxy) as c:
        assert c.recv(10) == b""
    assert echo.connections == 0


def test_a_server_that_is_down_closes_the_client(echo):
    echo.close()
    proxy = FaultProxy(echo.port).start()
    try:
        with connect(proxy) as c:
            assert c.recv(10) == b""
    finally:
        proxy.close()

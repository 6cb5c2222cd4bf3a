"""RDM6300 badge reader: frame parsing, and the reader end-to-end over a real pty."""
from __future__ import annotations

import os
import queue
import threading
import time
import tty
from functools import reduce
from operator import xor

import pytest
import serial

from device.badge import BadgeReader, RDM6300Parser

CARD_A = "0F00A1B2C3"
CARD_B = "1A2B3C4D5E"
CARD_C = "0300FF10EE"


def frame(uid: str, checksum: int | None = None) -> bytes:
    """A frame as the module sends it; checksum computed here unless given."""
    if checksum is None:
        checksum = reduce(xor, bytes.fromhex(uid))
    return b"\x02" + uid.encode("ascii") + f"{checksum:02X}".encode("ascii") + b"\x03"


# -- parser -------------------------------------------------------------------

def test_valid_frame():
    p = RDM6300Parser()
    assert p.feed(frame(CARD_A)) == [CARD_A]
    assert p.bad_frames == 0


def test_lower_case_hex_is_reported_upper_case():
    p = RDM6300Parser()
    assert p.feed(frame(CARD_A).lower()) == [CARD_A]


def test_bad_checksum_is_dropped_and_counted():
    p = RDM6300Parser()
    good = reduce(xor, bytes.fromhex(CARD_A))
    assert p.feed(frame(CARD_A, checksum=good ^ 0x01)) == []
    assert p.bad_frames == 1
    assert p.feed(frame(CARD_B)) == [CARD_B]  # still in sync afterwards


def test_frame_split_across_feeds():
    p = RDM6300Parser()
    data = frame(CARD_A)
    assert p.feed(data[:1]) == []
    assert p.feed(data[1:9]) == []
    assert p.feed(data[9:]) == [CARD_A]


def test_byte_by_byte():
    p = RDM6300Parser()
    out = [uid for b in frame(CARD_B) for uid in p.feed(bytes([b]))]
    assert out == [CARD_B]


def test_garbage_between_frames_and_a_stray_stx():
    p = RDM6300Parser()
    stream = b"\xff\x00noise" + frame(CARD_A) + b"\x03\x03zz" + b"\x02GG" + frame(CARD_B)
    assert p.feed(stream) == [CARD_A, CARD_B]
    assert p.bad_frames == 1  # the stray STX, nothing else


def test_non_hex_body_is_rejected():
    p = RDM6300Parser()
    assert p.feed(b"\x02" + b"0F00 1B2C3" + b"00" + b"\x03") == []
    assert p.bad_frames == 1


def test_repeated_frames_are_all_parsed():
    # Repeat suppression is the reader's job, not the parser's.
    p = RDM6300Parser()
    assert p.feed(frame(CARD_A) * 3) == [CARD_A] * 3


# -- reader over a pty ----------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pty_port():
    master, slave = os.openpty()
    # Raw before the reader opens it too: the line discipline must never hold bytes
    # back waiting for a newline or echo them.
    tty.setraw(slave)
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def opening_factory(opened: threading.Event):
    """serial.Serial that signals once the port is open (pyserial flushes input on
    open, so frames written earlier would be lost)."""
    def factory(*args, **kwargs):
        port = serial.Serial(*args, **kwargs)
        opened.set()
        return port
    return factory


def test_reader_reports_once_per_presentation(pty_port):
    master, name = pty_port
    seen: queue.Queue[str] = queue.Queue()
    clock = FakeClock()
    opened = threading.Event()
    reader = BadgeReader(name, on_badge=seen.put, repeat_s=2.0, clock=clock,
                         serial_factory=opening_factory(opened))
    reader.start()
    try:
        assert opened.wait(5)
        assert reader.connected

        # Card A held (the module repeats its frame), then card B as a marker: if A's
        # repeats had leaked through, they would arrive before B.
        os.write(master, frame(CARD_A) * 3)
        os.write(master, frame(CARD_A)[:5])
        os.write(master, frame(CARD_A)[5:] + frame(CARD_B))
        assert seen.get(timeout=5) == CARD_A
        assert seen.get(timeout=5) == CARD_B

        # Still held: each sighting is within repeat_s of the previous one, so A stays
        # suppressed even once its first report is older than repeat_s (C, B markers).
        clock.now += 1.5
        os.write(master, frame(CARD_A) + frame(CARD_C))
        assert seen.get(timeout=5) == CARD_C
        clock.now += 1.5
        os.write(master, frame(CARD_A) + frame(CARD_B))
        assert seen.get(timeout=5) == CARD_B

        # Taken away and presented again after repeat_s: reported again.
        clock.now += 2.5
        os.write(master, frame(CARD_A))
        assert seen.get(timeout=5) == CARD_A
        assert seen.empty()
    finally:
        reader.stop()
    assert not reader.connected


def test_reader_retries_until_the_port_opens(pty_port):
    master, name = pty_port
    seen: queue.Queue[str] = queue.Queue()
    opened = threading.Event()
    real = opening_factory(opened)
    attempts: list[str] = []

    def flaky(port, **kwargs):
        attempts.append(port)
        if len(attempts) < 3:
            raise serial.SerialException(f"could not open port {port}")
        return real(port, **kwargs)

    reader = BadgeReader(name, on_badge=seen.put, retry_s=0.01, serial_factory=flaky)
    reader.start()
    try:
        assert opened.wait(5)
        os.write(master, frame(CARD_B))
        assert seen.get(timeout=5) == CARD_B
        assert len(attempts) == 3
    finally:
        reader.stop()


class ScriptedPort:
    """A port that returns scripted chunks; an exception in the script is raised."""

    def __init__(self, script: list) -> None:
        self.script = script
        self.closed = False
        self.idle = threading.Event()

    @property
    def in_waiting(self) -> int:
        return 0

    def read(self, size: int = 1) -> bytes:
        if not self.script:
            self.idle.wait(0.01)  # like a read timeout with nothing arriving
            return b""
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.closed = True


def test_reader_reopens_after_a_read_error():
    first = ScriptedPort([frame(CARD_A)[:6], serial.SerialException("device disconnected")])
    second = ScriptedPort([frame(CARD_A)[6:], frame(CARD_B)])  # stale half-frame, then B
    ports = [first, second]
    seen: queue.Queue[str] = queue.Queue()
    reader = BadgeReader("/dev/ttyS0", on_badge=seen.put, retry_s=0.01,
                         serial_factory=lambda *a, **kw: ports.pop(0))
    reader.start()
    try:
        assert seen.get(timeout=5) == CARD_B
        assert first.closed
        assert seen.empty()
    finally:
        reader.stop()
    assert second.closed


def test_stop_is_prompt_while_waiting_to_retry():
    tried = threading.Event()

    def missing(port, **kwargs):
        tried.set()
        raise FileNotFoundError(port)

    reader = BadgeReader("/dev/nonexistent", on_badge=lambda uid: None, retry_s=60,
                         serial_factory=missing)
    reader.start()
    assert tried.wait(5)
    started = time.monotonic()
    reader.stop()
    assert time.monotonic() - started < 2
    reader.stop()  # idempotent


def test_callback_errors_do_not_kill_the_reader():
    port = ScriptedPort([frame(CARD_A), frame(CARD_B)])
    seen: queue.Queue[str] = queue.Queue()

    def on_badge(uid: str) -> None:
        if uid == CARD_A:
            raise RuntimeError("consumer bug")
        seen.put(uid)

    reader = BadgeReader("/dev/ttyS0", on_badge=on_badge, serial_factory=lambda *a, **kw: port)
    reader.start()
    try:
        assert seen.get(timeout=5) == CARD_B
    finally:
        reader.stop()

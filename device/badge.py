"""Optional RDM6300-style 125 kHz RFID badge reader on a serial port (9600 8N1).

Frame: STX (0x02), 10 ASCII hex chars (version byte + 4-byte tag), 2 ASCII hex
chars checksum (XOR of those 5 bytes), ETX (0x03). The module repeats the frame for
as long as a card is held in the field, so the reader debounces repeats itself.

pyserial is imported inside `BadgeReader.start()` so this module imports without it.
"""
from __future__ import annotations

import logging
import string
import threading
import time
from functools import reduce
from operator import xor
from typing import Any, Callable

__all__ = ["RDM6300Parser", "BadgeReader", "BadgeError", "BadgeReaderRunning", "FRAME_LEN"]

log = logging.getLogger(__name__)

STX = 0x02
ETX = 0x03
FRAME_LEN = 14  # STX + 10 data + 2 checksum + ETX
_HEX = frozenset(string.hexdigits.encode("ascii"))

# pyserial read timeout: bounds how long stop() waits for the reader thread.
_READ_TIMEOUT_S = 0.2


class BadgeError(Exception):
    """Base class for badge reader errors."""


class BadgeReaderRunning(BadgeError, RuntimeError):
    """start() on a reader that is already running."""


def _decode(frame: bytes) -> str | None:
    """UID of one candidate frame (starting with STX), or None if it is invalid."""
    if frame[-1] != ETX:
        return None
    body = frame[1:-1]
    # Explicit hex check: bytes.fromhex() would silently skip embedded spaces.
    if not all(b in _HEX for b in body):
        return None
    text = body.decode("ascii")
    data = bytes.fromhex(text[:10])
    if reduce(xor, data) != int(text[10:], 16):
        return None
    return text[:10].upper()


class RDM6300Parser:
    """Incremental frame parser; feed it whatever the serial port returned.

    `bad_frames` counts candidate frames (a STX with 13 bytes after it) rejected for
    framing or checksum; bytes outside frames are skipped silently.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.bad_frames = 0

    def reset(self) -> None:
        """Forget any partial frame (e.g. after reopening the port)."""
        self._buf.clear()

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        uids: list[str] = []
        while True:
            start = self._buf.find(STX)
            if start < 0:
                self._buf.clear()
                break
            del self._buf[:start]
            if len(self._buf) < FRAME_LEN:
                break  # wait for the rest of the frame
            uid = _decode(bytes(self._buf[:FRAME_LEN]))
            if uid is None:
                self.bad_frames += 1
                # Drop only the STX: it may have been noise, with a real frame
                # starting a few bytes later inside this candidate.
                del self._buf[:1]
            else:
                uids.append(uid)
                del self._buf[:FRAME_LEN]
        return uids


class _RepeatFilter:
    """Suppresses a UID seen again within `window_s` of its previous sighting.

    The window slides with every sighting, so a card held for a minute reports once,
    and the same card presented again after `window_s` away reports again.
    """

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._last_seen: dict[str, float] = {}

    def is_new(self, uid: str, now: float) -> bool:
        # Prune so a day of distinct badges does not grow the dict without bound.
        self._last_seen = {u: t for u, t in self._last_seen.items() if now - t < self._window_s}
        new = uid not in self._last_seen
        self._last_seen[uid] = now
        return new


class BadgeReader:
    """Reads badges on a background thread and calls `on_badge(uid)` once per
    presentation (from that thread: hand off to a queue, don't block).

    A missing or failing port is logged and reopened every `retry_s` seconds; the
    counter keeps working without badges meanwhile.
    """

    def __init__(self, port: str, baud: int = 9600, *, on_badge: Callable[[str], None],
                 repeat_s: float = 2.0, retry_s: float = 3.0,
                 serial_factory: Callable[..., Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.port = port
        self.baud = baud
        self._on_badge = on_badge
        self._repeat_s = repeat_s
        self._retry_s = retry_s
        self._serial_factory = serial_factory
        self._clock = clock
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: threading.Thread | None = None
        self._parser = RDM6300Parser()

    @property
    def connected(self) -> bool:
        """True while the serial port is open (for health reporting)."""
        return self._connected.is_set()

    @property
    def bad_frames(self) -> int:
        """Rejected frames since construction (a rising count hints at wiring noise)."""
        return self._parser.bad_frames

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            raise BadgeReaderRunning(f"badge reader on {self.port} already running")
        if self._serial_factory is None:
            import serial

            self._serial_factory = serial.Serial
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"badge-{self.port}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and join the reader thread; safe to call more than once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("badge reader thread on %s did not stop within %ss",
                            self.port, timeout)
            self._thread = None

    # -- reader thread ---------------------------------------------------------

    def _run(self) -> None:
        repeats = _RepeatFilter(self._repeat_s)
        failures = 0
        while not self._stop.is_set():
            try:
                port = self._serial_factory(self.port, baudrate=self.baud,
                                            timeout=_READ_TIMEOUT_S)
            except Exception as exc:
                failures += 1
                # The reader is optional hardware: say it once loudly, then quietly,
                # rather than filling the SD card with a line every few seconds.
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "cannot open badge reader %s (%s); retrying every %ss",
                        self.port, exc, self._retry_s)
                self._stop.wait(self._retry_s)
                continue
            failures = 0
            log.info("badge reader %s open", self.port)
            self._connected.set()
            try:
                self._pump(port, repeats)
            except Exception:
                log.exception("badge reader %s failed; reopening in %ss",
                              self.port, self._retry_s)
                self._stop.wait(self._retry_s)
            finally:
                self._connected.clear()
                try:
                    port.close()
                except Exception:
                    log.debug("closing %s failed", self.port, exc_info=True)

    def _pump(self, port: Any, repeats: _RepeatFilter) -> None:
        parser = self._parser
        # A partial frame from a previous connection would only corrupt the next one.
        parser.reset()
        while not self._stop.is_set():
            # Block for the first byte (up to the port timeout), then take the rest of
            # what has arrived, so a frame is handled as soon as it is complete.
            data = port.read(port.in_waiting or 1)
            for uid in parser.feed(data):
                if repeats.is_new(uid, self._clock()):
                    self._deliver(uid)

    def _deliver(self, uid: str) -> None:
        try:
            self._on_badge(uid)
        except Exception:
            log.exception("on_badge failed for %s", uid)

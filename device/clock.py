"""Time as the counter sees it.

A Pi has no RTC: after a power cut it boots in the past until NTP answers. Every event
therefore carries the wall clock, whether the kernel believes it, the boot id and the
seconds since boot, so the service can correct events made before the clock was set.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import time
import uuid

from common.clock import Clock, now

_TIME_ERROR = 5  # adjtimex(2): "clock not synchronized"


def kernel_clock_synced() -> bool | None:
    """What adjtimex says about NTP sync (as `timedatectl` does); None if it cannot tell."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes=0 means read-only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR


def read_boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        # Not Linux: one id per process is the best we can promise.
        return str(uuid.uuid4())


class SystemClock:
    """Monotonic time for timers, wall time and sync state for events.

    `wall` is the wall clock events are stamped with (seconds since the epoch); only a test
    replaces it. Timers never read it: they use `monotonic`, which no clock step can move.
    """

    def __init__(self, trust: str = "auto", *, recheck_s: float = 10.0, wall: Clock = now):
        if trust not in ("auto", "always", "never"):
            raise ValueError(f"clock trust must be auto, always or never, not {trust!r}")
        self.trust = trust
        self._wall = wall
        self.boot_id = read_boot_id()
        self._recheck_s = recheck_s
        self._synced: bool = False
        self._checked_at: float | None = None

    @staticmethod
    def monotonic() -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        # Whole milliseconds, truncated like time.time_ns() // 1_000_000 was.
        return int(self._wall() * 1000)

    @staticmethod
    def since_boot() -> float:
        # CLOCK_BOOTTIME keeps counting through suspend, matching the boot id's lifetime.
        return round(time.clock_gettime(getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)), 3)

    def synced(self) -> bool:
        if self.trust != "auto":
            return self.trust == "always"
        now = time.monotonic()
        if self._checked_at is None or now - self._checked_at >= self._recheck_s:
            self._synced = bool(kernel_clock_synced())
            self._checked_at = now
        return self._synced

    def stamp(self) -> dict:
        """The clock fields every event carries, in protocol order."""
        return {
            "ts": self.wall_ms(),
            "clock_ok": self.synced(),
            "boot": self.boot_id,
            "mono": self.since_boot(),
        }

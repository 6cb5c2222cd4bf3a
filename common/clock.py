"""The wall clock every part of hailong reads, and the one way to move it for a test run.

Time is an input: code whose behaviour depends on the date or the hour takes a clock (a
callable returning seconds since the epoch, like `time.time`) and defaults to `now` here.
Timeouts and intervals use `time.monotonic` and are not affected.

`HAILONG_CLOCK_SHIFT_S` (seconds, may be negative) shifts this clock in every process that
inherits it, all by the same amount, so a counter, the service and the browser-facing pages
agree on "today". The test suite sets it from `HAILONG_NOW` (see README, "Running the suite
at another date"); it is not meant for a production counter, whose events must carry true time.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable

__all__ = ["SHIFT_ENV", "Clock", "now", "now_ms", "shift_s"]

SHIFT_ENV = "HAILONG_CLOCK_SHIFT_S"

Clock = Callable[[], float]


def shift_s() -> float:
    """The configured shift in seconds (0 when unset); a malformed value is an error, not 0."""
    raw = os.environ.get(SHIFT_ENV)
    if not raw:
        return 0.0
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{SHIFT_ENV} must be a number of seconds, got {raw!r}") from None


def now() -> float:
    """Seconds since the epoch, as `time.time()`, shifted by HAILONG_CLOCK_SHIFT_S."""
    return time.time() + shift_s()


def now_ms() -> int:
    """Milliseconds since the epoch (the wire contract's `ts` unit) from `now`."""
    return int(now() * 1000)

"""Event times: the correction of unsynchronised device clocks (local days: common.periods).

A counter Pi has no battery-backed clock, so until NTP syncs, its `ts` is wrong
but its `mono` (seconds since boot) is right. Within one boot `ts - mono*1000` is
constant once the clock is right, so one synchronised event of a boot fixes all
the others (docs/protocol.md, "Clocks").
"""
from __future__ import annotations

__all__ = ["CALENDAR_END_MS", "boot_offset", "corrected_ts"]

# The calendar (Python's dates) ends with the year 9999: a day short of that, every zone still has a
# day for a time. A device may claim any ts up to the protocol's 2**53, so times are kept within it.
CALENDAR_END_MS = 253_402_128_000_000  # 9999-12-30T00:00:00Z


def boot_offset(ts: int, mono: float) -> float:
    """Wall clock minus monotonic clock (ms) of a boot, from one of its synchronised events."""
    return ts - float(mono) * 1000  # float: an integer mono of 2**64 would not fit SQLite's INTEGER


def corrected_ts(offset: float, mono: float) -> int:
    """The wall-clock time (ms) of an event of that boot recorded at `mono` seconds, within the calendar."""
    ms = mono * 1000 + offset  # may be inf, or NaN (inf - inf), for absurd mono values
    if not ms > 0:
        return 0
    return round(ms) if ms < CALENDAR_END_MS else CALENDAR_END_MS

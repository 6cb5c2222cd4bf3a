"""Event times: the correction of unsynchronised device clocks (local days: common.periods).

A counter Pi has no battery-backed clock, so until NTP syncs, its `ts` is wrong
but its `mono` (seconds since boot) is right. Within one boot `ts - mono*1000` is
constant once the clock is right, so one synchronised event of a boot fixes all
the others (docs/protocol.md, "Clocks").
"""
from __future__ import annotations

__all__ = ["boot_offset", "corrected_ts"]


def boot_offset(ts: int, mono: float) -> float:
    """Wall clock minus monotonic clock (ms) of a boot, from one of its synchronised events."""
    return ts - mono * 1000


def corrected_ts(offset: float, mono: float) -> int:
    """The wall-clock time (ms) of an event of that boot recorded at `mono` seconds."""
    return max(0, round(mono * 1000 + offset))

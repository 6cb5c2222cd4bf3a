"""Event times: site-local days and the correction of unsynchronised device clocks.

A counter Pi has no battery-backed clock, so until NTP syncs, its `ts` is wrong
but its `mono` (seconds since boot) is right. Within one boot `ts - mono*1000` is
constant once the clock is right, so one synchronised event of a boot fixes all
the others (docs/protocol.md, "Clocks").
"""
from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DEFAULT_TZ", "boot_offset", "corrected_ts", "local_day", "parse_day", "zone"]

DEFAULT_TZ = "Asia/Ho_Chi_Minh"


@lru_cache(maxsize=None)
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name; ValueError for an unknown one (a typo in the registry)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def local_day(ms: int, tz: ZoneInfo) -> str:
    """The local calendar day (YYYY-MM-DD) of a UTC millisecond timestamp."""
    # Whole seconds: no zone changes day at a fractional second, and integer
    # arithmetic cannot round 23:59:59.9995 into the next day.
    return datetime.fromtimestamp(ms // 1000, tz).date().isoformat()


def parse_day(text: str) -> str:
    """Check a YYYY-MM-DD day (ValueError otherwise) and return it."""
    if not isinstance(text, str) or len(text) != 10:
        raise ValueError(f"day must be YYYY-MM-DD, got {text!r}")
    return date.fromisoformat(text).isoformat()


def boot_offset(ts: int, mono: float) -> float:
    """Wall clock minus monotonic clock (ms) of a boot, from one of its synchronised events."""
    return ts - mono * 1000


def corrected_ts(offset: float, mono: float) -> int:
    """The wall-clock time (ms) of an event of that boot recorded at `mono` seconds."""
    return max(0, round(mono * 1000 + offset))

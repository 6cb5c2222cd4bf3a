"""The calendar: local days, ISO weeks (Monday first), months and custom ranges in a site's zone.

One module for the store, the dashboard and the reports, so "this week" or "a month" means the
same everywhere. Days are `date`s or "YYYY-MM-DD" strings as noted; a range is inclusive of both
ends. Every function takes the day or the clock it works from: nothing here reads the time itself.
"""
from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.clock import Clock, now

__all__ = ["DEFAULT_TZ", "zone", "local_day", "parse_day", "today", "week_of", "month_of", "month_range",
           "to_date", "overview_periods", "split_months", "month_key"]

# Vietnam has one zone and no daylight saving; a site elsewhere sets its own in the registry.
DEFAULT_TZ = "Asia/Ho_Chi_Minh"

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


@lru_cache(maxsize=None)
def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name; ValueError for an unknown one (a typo in the registry)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
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


def to_date(day: date | str) -> date:
    return day if isinstance(day, date) else date.fromisoformat(parse_day(day))


def today(tz: ZoneInfo, clock: Clock = now) -> date:
    """The local date in `tz` at the clock's moment."""
    return datetime.fromtimestamp(clock(), tz).date()


def week_of(day: date | str) -> tuple[date, date]:
    """The ISO week (Monday..Sunday) holding `day`."""
    d = to_date(day)
    monday = d - timedelta(days=d.weekday())
    return monday, monday + timedelta(days=6)


def month_of(day: date | str) -> tuple[date, date]:
    """The first and last day of the month holding `day`."""
    d = to_date(day)
    return d.replace(day=1), d.replace(day=calendar.monthrange(d.year, d.month)[1])


def month_key(day: date | str) -> str:
    """"YYYY-MM" of the month holding `day`."""
    return to_date(day).strftime("%Y-%m")


def month_range(month: str) -> tuple[date, date]:
    """The first and last day of a month given as "YYYY-MM": "2026-11" -> (2026-11-01, 2026-11-30)."""
    m = _MONTH.fullmatch(month) if isinstance(month, str) else None
    if m is None:
        raise ValueError(f"month: expected a month YYYY-MM, got {month!r}")
    year, mon = int(m[1]), int(m[2])
    if not 1 <= mon <= 12 or year < 1:
        raise ValueError(f"month: expected a month YYYY-MM with MM 01-12, got {month!r}")
    return month_of(date(year, mon, 1))


def overview_periods(day: date | str) -> list[tuple[str, date, date]]:
    """Today, this week so far and this month so far, each ending on `day`.

    On a Monday the week is just today; on the 1st the month is just today; they are still three
    periods, so a page shows the same three figures every day.
    """
    d = to_date(day)
    return [("today", d, d), ("week", week_of(d)[0], d), ("month", month_of(d)[0], d)]


def split_months(first: date | str, last: date | str) -> list[tuple[str, str, str]]:
    """Split the days first..last (inclusive) into whole months and the days around them, so a
    query can read whole months from month rollups and only the rest by day.

    E.g. 2025-02-20..2025-05-10 -> ("day", 2025-02-20, 2025-02-28), ("month", 2025-03, 2025-04),
    ("day", 2025-05-01, 2025-05-10). An empty range (first after last) gives no pieces.
    """
    start, end = to_date(first), to_date(last)
    if start > end:
        return []
    try:
        return _split_months(start, end)
    except OverflowError:  # a neighbouring month beyond year 1 or 9999: read those days one by one
        return [("day", start.isoformat(), end.isoformat())]


def _split_months(start: date, end: date) -> list[tuple[str, str, str]]:
    m0 = month_of(start)[0] if start.day == 1 else month_of(start)[1] + timedelta(days=1)
    m1 = month_of(end)[0] if end == month_of(end)[1] else month_of(end)[0] - timedelta(days=1)
    m1 = month_of(m1)[0]
    if m0 > m1:  # no whole month inside
        return [("day", start.isoformat(), end.isoformat())]
    pieces = []
    if start < m0:
        pieces.append(("day", start.isoformat(), (m0 - timedelta(days=1)).isoformat()))
    pieces.append(("month", month_key(m0), month_key(m1)))
    after = month_of(m1)[1] + timedelta(days=1)
    if after <= end:
        pieces.append(("day", after.isoformat(), end.isoformat()))
    return pieces

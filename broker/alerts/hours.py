"""Opening hours of a site: weekly time ranges and closed days, in the site's time zone.

Alerts only count the time a site is open: a counter switched off at lunch, on Sunday or
over Tết is not an incident. Pure functions over a `Hours` value and an instant, no clock
read here (the engine passes its own).

Written as text in the config and the dashboard's form, one clause per group of days:

    mon-fri 07:30-11:30,13:30-17:00; sat 07:30-11:30

Days are mon..sun, a clause may name a range (mon-fri) or a list (mon,wed); a day that no
clause names is closed. Closed dates (public holidays, Tết) are YYYY-MM-DD.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["DAYS", "Hours", "is_open", "open_seconds", "closing_time"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"([0-9]{1,2}):([0-9]{2})-([0-9]{1,2}):([0-9]{2})")
MAX_CLOSED = 1000  # closed dates kept per site: decades of holidays
_MAX_SPAN_DAYS = 400  # open_seconds walks day by day; an older "since" is as good as a year ago

Range = tuple[int, int]  # minutes after local midnight, start < end <= 1440


def _minutes(h: str, m: str) -> int:
    hours, mins = int(h), int(m)
    if mins > 59 or hours > 24 or (hours == 24 and mins):
        raise ValueError(f"{h}:{m} is not a time of day")
    return hours * 60 + mins


def parse_ranges(texts: list[str] | tuple[str, ...]) -> tuple[Range, ...]:
    """["07:30-11:30", "13:30-17:00"] -> ((450, 690), (810, 1020)); ValueError if malformed or overlapping."""
    ranges = []
    for text in texts:
        m = _RANGE.fullmatch(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ValueError(f"expected a time range HH:MM-HH:MM, got {text!r}")
        start, end = _minutes(m[1], m[2]), _minutes(m[3], m[4])
        if start >= end:
            raise ValueError(f"{text!r} ends before it starts")
        ranges.append((start, end))
    ranges.sort()
    for (_, end), (start, _) in zip(ranges, ranges[1:]):
        if start < end:
            raise ValueError(f"time ranges overlap: {texts!r}")
    return tuple(ranges)


def _days(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        first, _, last = part.strip().lower().partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"expected days mon..sun such as mon-fri or sat,sun, got {text!r}")
        a, b = DAYS.index(first), DAYS.index(last or first)
        if b < a:
            raise ValueError(f"day range {part.strip()!r} runs backwards")
        out += range(a, b + 1)
    return out


def _show(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class Hours:
    """weekly[0] (Monday) .. weekly[6] (Sunday): sorted, non-overlapping ranges; closed: dates shut all day."""

    weekly: tuple[tuple[Range, ...], ...] = ((),) * 7
    closed: frozenset[date] = field(default_factory=frozenset)

    @classmethod
    def from_text(cls, text: str, closed: list[str] | tuple[str, ...] = ()) -> "Hours":
        weekly: list[tuple[Range, ...]] = [()] * 7
        for clause in filter(None, (c.strip() for c in text.split(";"))):
            days, _, ranges = clause.partition(" ")
            parsed = parse_ranges([r for r in ranges.replace(" ", "").split(",") if r])
            if not parsed:
                raise ValueError(f"clause {clause!r} names no time range")
            for d in _days(days):
                if weekly[d]:
                    raise ValueError(f"{DAYS[d]} is named twice in {text!r}")
                weekly[d] = parsed
        return cls(tuple(weekly), _closed(closed))

    @classmethod
    def from_json(cls, data: dict) -> "Hours":
        """{"weekly": {"mon": ["07:30-11:30", ...], ...}, "closed": ["2027-02-06", ...]}, as the API takes it."""
        weekly = data.get("weekly")
        weekly = {} if weekly is None else weekly
        if not isinstance(weekly, dict) or set(weekly) - set(DAYS):
            raise ValueError(f"weekly: expected an object keyed by {', '.join(DAYS)}")
        closed = data.get("closed")
        return cls(tuple(parse_ranges(weekly.get(d) or []) for d in DAYS), _closed([] if closed is None else closed))

    def to_json(self) -> dict:
        return {"weekly": {DAYS[d]: [f"{_show(a)}-{_show(b)}" for a, b in r] for d, r in enumerate(self.weekly) if r},
                "closed": sorted(d.isoformat() for d in self.closed)}

    def to_text(self) -> str:
        """The weekly part as text; days with the same ranges share one clause (mon,tue,wed,thu,fri ...)."""
        groups: dict[tuple[Range, ...], list[str]] = {}
        for d, ranges in enumerate(self.weekly):
            if ranges:
                groups.setdefault(ranges, []).append(DAYS[d])
        return "; ".join(",".join(days) + " " + ",".join(f"{_show(a)}-{_show(b)}" for a, b in ranges)
                         for ranges, days in groups.items())

    def ranges_on(self, day: date) -> tuple[Range, ...]:
        return () if day in self.closed else self.weekly[day.weekday()]


def _closed(days) -> frozenset[date]:
    if isinstance(days, str) or not isinstance(days, (list, tuple, set, frozenset)):
        raise ValueError("closed: expected a list of dates YYYY-MM-DD")
    if len(days) > MAX_CLOSED:
        raise ValueError(f"closed: at most {MAX_CLOSED} dates")
    out = set()
    for d in days:
        try:
            if not isinstance(d, str) or len(d) != 10:
                raise ValueError
            out.add(date.fromisoformat(d))
        except ValueError:
            raise ValueError(f"closed: expected a date YYYY-MM-DD, got {d!r}") from None
    return frozenset(out)


def _at(day: date, minutes: int, tz: ZoneInfo) -> float:
    return (datetime.combine(day, time(), tz) + timedelta(minutes=minutes)).timestamp()


def is_open(hours: Hours, tz: ZoneInfo, t: float) -> bool:
    """Whether the site is open at instant `t` (seconds since the epoch): a range's start counts, its end does not."""
    local = datetime.fromtimestamp(t, tz)
    minute = local.hour * 60 + local.minute + local.second / 60
    return any(a <= minute < b for a, b in hours.ranges_on(local.date()))


def open_seconds(hours: Hours, tz: ZoneInfo, start: float, end: float) -> float:
    """Seconds of [start, end) during which the site was open."""
    if end <= start:
        return 0.0
    start = max(start, end - _MAX_SPAN_DAYS * 86400)
    day, last = datetime.fromtimestamp(start, tz).date(), datetime.fromtimestamp(end, tz).date()
    total = 0.0
    while day <= last:
        for a, b in hours.ranges_on(day):
            total += max(0.0, min(end, _at(day, b, tz)) - max(start, _at(day, a, tz)))
        day += timedelta(days=1)
    return total


def closing_time(hours: Hours, tz: ZoneInfo, day: date) -> float | None:
    """When the site closes on `day` (the end of its last range), or None if it is closed all day."""
    ranges = hours.ranges_on(day)
    return _at(day, ranges[-1][1], tz) if ranges else None

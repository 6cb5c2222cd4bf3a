"""The month picker the officers, misuse and reports pages share: "this-month", "last-month" or YYYY-MM."""
from __future__ import annotations

import re
from datetime import date

from common.periods import month_range

__all__ = ["parse_period", "recent_months", "shift_month"]

_MONTH = re.compile(r"[0-9]{4}-[0-9]{2}")
FIRST_YEAR = 2000  # nothing was rated before; an earlier year is a typo, shown as this month
PICKER_MONTHS = 13  # this month and the twelve before it


def shift_month(d: date, by: int) -> str:
    """YYYY-MM of the month `by` months after (before, when negative) the one holding `d`."""
    y, m = divmod(d.year * 12 + d.month - 1 + by, 12)
    return f"{y:04d}-{m + 1:02d}"


def _bounds(month: str) -> tuple[str, str]:
    first, last = month_range(month)
    return first.isoformat(), last.isoformat()


def parse_period(text: str | None, today: date) -> tuple[str, str, str, str]:
    """("this-month"|"last-month"|"YYYY-MM", month, first day, last day); anything else is this month."""
    this = shift_month(today, 0)
    if text == "last-month":
        month = shift_month(today, -1)
        return text, month, *_bounds(month)
    if text and _MONTH.fullmatch(text) and 1 <= int(text[5:]) <= 12 and int(text[:4]) >= FIRST_YEAR:
        return (text if text != this else "this-month"), text, *_bounds(text)
    return "this-month", this, *_bounds(this)


def recent_months(today: date) -> list[str]:
    """The months the picker offers, newest first."""
    return [shift_month(today, -i) for i in range(PICKER_MONTHS)]

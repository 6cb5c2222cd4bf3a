"""The rollup tables: how an ingest batch moves their counts, and how a report reads a range of days.

rating_days/rating_months and call_days/call_months hold counts per (period, site, counter,
officer, ...), '' for no officer. They change in the same transaction as the events they
count, so each always equals a GROUP BY over the events table (docs/store.md).
"""
from __future__ import annotations

from collections import Counter

import broker.store.dialect as dialect
from broker.store.dialect import Connection
from common.periods import month_key, split_months

__all__ = ["KEYS", "apply", "over_days"]

# Rollup keys, in this order: site, counter, officer, day or month, then the type's own columns.
KEYS = {"rating": ("scale", "score", "flagged"), "call": ("action",)}


def _statements(kind: str, period: str) -> tuple[str, str]:
    """(add n to a row, delete the row if it dropped to zero) for one rollup table."""
    key = ("site", "counter", "officer", period, *KEYS[kind])
    table = f"{kind}_{period}s"
    add = dialect.upsert(table, (*key, "n"), key, "n = n + excluded.n")
    drop = f"DELETE FROM {table} WHERE {' AND '.join(f'{k} = ?' for k in key)} AND n <= 0"
    return add, drop


_STATEMENTS = {(kind, period): _statements(kind, period) for kind in KEYS for period in ("day", "month")}


def apply(db: Connection, kind: str, days: Counter[tuple]) -> None:
    """Add the changes (day key -> change in n) to the day rollup and, summed by month, to the month one."""
    month_of = {day: month_key(day) for day in {key[3] for key in days}}  # a batch spans a day or two
    months: Counter[tuple] = Counter()
    for key, n in days.items():
        months[(*key[:3], month_of[key[3]], *key[4:])] += n
    for period, changes in (("day", days), ("month", months)):
        add, drop = _STATEMENTS[kind, period]
        # A correction that moves an event within a day (or month) nets out to zero.
        db.executemany(add, [(*key, n) for key, n in changes.items() if n])
        shrunk = [key for key, n in changes.items() if n < 0]
        if shrunk:
            db.executemany(drop, shrunk)  # no zero rows: a recount never has them


def over_days(kind: str, columns: str, first: str, last: str, where: str = "",
              args: tuple = ()) -> tuple[str, list]:
    """A query for `columns` of the rollup rows of the days first..last, and its arguments.

    Whole months are read from the month table, the days around them from the day table
    (a month of 200 officers is ~2,000 rows instead of ~60,000). `where` ("AND ...") filters
    each part with its own `args`. No rows at all when first is after last.
    """
    parts, params = [], []
    for period, a, b in split_months(first, last):
        parts.append(f"SELECT {columns} FROM {kind}_{period}s WHERE {period} BETWEEN ? AND ?{where}")
        params += [a, b, *args]
    if not parts:
        parts.append(f"SELECT {columns} FROM {kind}_days WHERE 1 = 0")
    return " UNION ALL ".join(parts), params

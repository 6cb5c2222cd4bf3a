"""Waiting and service times of queue tickets, per queue, officer, counter or site.

Wait = first call - taken (every called ticket, no-shows included); service = done - called
(tickets served, i.e. done). Times are the service's (events.ts), in seconds.
"""
from __future__ import annotations

from collections.abc import Iterable

from broker.store.connection import StoreBase
from broker.store.registry import names_of
from broker.store.sites import site_filter
from broker.store.statistics import UNATTRIBUTED
from common.periods import parse_day

__all__ = ["WAITING_GROUPS", "Waiting", "percentile"]

WAITING_GROUPS = ("queue", "officer", "counter", "site")
_KEY = {"queue": "site || '/' || queue", "officer": "coalesce(officer, '')",
        "counter": "site || '/' || coalesce(counter, '')", "site": "site"}


def percentile(values: list[float], p: float) -> float | None:
    """The p-th quantile (0..1) of `values`, interpolated between ranks; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = p * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


class Waiting(StoreBase):
    def waiting_stats(self, group: str, date_from: str, date_to: str, site: str | None = None, *,
                      sites: Iterable[str] | None = None) -> list[dict]:
        """Rows {key, name, tickets, served, rated, no_show, wait_mean_s, wait_p50_s, wait_p90_s, service_mean_s}
        over the tickets of the days date_from..date_to (inclusive), by key; `rated`: served tickets
        with a counted rating.

        Keys: "site/queue", officer id ("" for tickets no officer called), "site/counter" ("site/"
        for tickets never called), site.
        """
        if group not in WAITING_GROUPS:
            raise ValueError(f"group must be one of {', '.join(WAITING_GROUPS)}, got {group!r}")
        date_from, date_to = parse_day(date_from), parse_day(date_to)
        if date_from > date_to:
            raise ValueError(f"date_from {date_from} is after date_to {date_to}")
        where, args = "day BETWEEN ? AND ?", [date_from, date_to]
        if site is not None:
            where, args = where + " AND site = ?", [*args, site]
        more, more_args = site_filter(sites)  # a scoped principal's sites (None: every site)
        where, args = where + more, [*args, *more_args]
        with self._read() as db:
            rows = db.execute(f"SELECT {_KEY[group]}, status, taken_ts, called_ts, done_ts, rating_event FROM queue_tickets"
                              f" WHERE {where}", args).fetchall()
            names = self._names(db, group)
        return [_row(key, names.get(key, ""), items) for key, items in sorted(_grouped(rows).items())]

    def _names(self, db, group: str) -> dict[str, str]:
        if group == "queue":
            return {f"{s}/{q}": n for s, q, n in db.execute("SELECT site, queue, name FROM queues")}
        names = names_of(db, group)
        found = {"/".join(key): name for key, name in names.items()}
        if group == "officer":
            found[""] = UNATTRIBUTED
        return found


def _grouped(rows: list[tuple]) -> dict[str, list[tuple]]:
    grouped: dict[str, list[tuple]] = {}
    for key, *rest in rows:
        grouped.setdefault(key, []).append(tuple(rest))
    return grouped


def _row(key: str, name: str, items: list[tuple]) -> dict:
    waits = [(called - taken) / 1000 for _, taken, called, _, _ in items if called is not None]
    services = [(done - called) / 1000 for status, _, called, done, _ in items
                if status == "done" and called is not None and done is not None]
    return {"key": key, "name": name, "tickets": len(items),
            "served": sum(1 for status, *_ in items if status == "done"),
            "rated": sum(1 for status, *_, rating in items if status == "done" and rating is not None),
            "no_show": sum(1 for status, *_ in items if status == "noshow"),
            "wait_mean_s": _mean(waits), "wait_p50_s": percentile(waits, 0.5), "wait_p90_s": percentile(waits, 0.9),
            "service_mean_s": _mean(services)}

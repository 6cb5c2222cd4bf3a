"""The tickets' times as the hall and waiting pages read them: one row per ticket of a period.

The queue's own modules (broker.store.queues, tickets) write them; this one only reads, for the
figures `waiting_stats` does not give (hours of day, the share rated) and the report's waiting
columns. broker.waiting turns these rows into figures.
"""
from __future__ import annotations

from collections.abc import Iterable

from broker.store.connection import StoreBase
from broker.store.sites import site_filter
from common.periods import parse_day

__all__ = ["TicketTimes"]

_COLUMNS = ("site", "day", "queue", "ticket", "status", "counter", "officer", "taken_ts", "called_ts", "done_ts")


class TicketTimes(StoreBase):
    def ticket_times(self, first: str, last: str, *, site: str | None = None,
                     officer: str | None = None, sites: Iterable[str] | None = None) -> list[dict]:
        """Tickets of the site-local days first..last (inclusive), optionally of one site or one officer,
        each with `rated`: whether a counted rating links to it."""
        where, args = ["t.day BETWEEN ? AND ?"], [parse_day(first), parse_day(last)]
        if site is not None:
            where.append("t.site = ?")
            args.append(site)
        if officer is not None:
            where.append("t.officer = ?")
            args.append(officer)
        if sites is not None:  # a scoped principal's sites
            more, more_args = site_filter(sites, "t.site")
            where.append(more.removeprefix(" AND "))
            args.extend(more_args)
        cols = ", ".join(f"t.{c}" for c in _COLUMNS)
        # rating_event: the counted rating linked to the ticket (broker.store.tickets.link_ratings).
        rows = self._rows(f"SELECT {cols}, t.rating_event IS NOT NULL FROM queue_tickets AS t"
                          f" WHERE {' AND '.join(where)} ORDER BY t.taken_ts, t.id", tuple(args))
        return [{**dict(zip(_COLUMNS, r[:-1])), "rated": bool(r[-1])} for r in rows]

"""The tickets' times as the hall and waiting pages read them: one row per ticket of a period.

The queue's own module (tickets, calls, sequences) writes them; this one only reads, for the
figures `waiting_stats` does not give (hours of day, the share rated) and the report's waiting
columns. broker.waiting turns these rows into figures.
"""
from __future__ import annotations

from broker.store.connection import StoreBase

__all__ = ["TicketTimes"]

_COLUMNS = ("site", "date", "queue", "ticket", "status", "counter", "officer", "taken_ts", "called_ts", "done_ts")


class TicketTimes(StoreBase):
    def ticket_times(self, first: str, last: str, *, site: str | None = None,
                     officer: str | None = None) -> list[dict]:
        """Tickets of the site-local days first..last (inclusive), optionally of one site or one officer,
        each with `rated`: whether a counted rating links to it."""
        where, args = ["t.date BETWEEN ? AND ?"], [first, last]
        if site is not None:
            where.append("t.site = ?")
            args.append(site)
        if officer is not None:
            where.append("t.officer = ?")
            args.append(officer)
        cols = ", ".join(f"t.{c}" for c in _COLUMNS)
        rows = self._rows(f"SELECT {cols}, t.rating IS NOT NULL FROM tickets AS t WHERE {' AND '.join(where)} "
                          "ORDER BY t.taken_ts", tuple(args))
        return [{**dict(zip(_COLUMNS, r[:-1])), "rated": bool(r[-1])} for r in rows]

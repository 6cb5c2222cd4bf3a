"""The queue's registry and its numbers: queues per site, the queues each counter serves, and the
daily number sequence per (site, day, queue) that kiosk requests and reserved blocks draw from.

A number is taken out of the sequence inside the write transaction that records who got it, so
no two requests or blocks ever get the same number of a queue on a day. A request redelivered
by MQTT (same kiosk, same `req`) gets what it got the first time, not more numbers.
"""
from __future__ import annotations

import broker.store.dialect as dialect
from broker.store.connection import StoreBase
from broker.store.dialect import Connection
from broker.store.errors import InUse
from common.periods import parse_day
from protocol import ProtocolError
from protocol.tickets import MAX_NUMBER, check_queue_id, check_queue_prefix, format_ticket

__all__ = ["QueueRefusal", "Queues", "counter_queue_ids", "waiting_ahead"]


class QueueRefusal(ValueError):
    """A kiosk's request the service cannot grant; the message is sent back to the kiosk."""


_QUEUE = ("site", "queue", "name", "prefix")
_UPSERT_QUEUE = dialect.upsert("queues", _QUEUE, ("site", "queue"), "name = excluded.name, prefix = excluded.prefix")
_BUMP = dialect.upsert("queue_numbers", ("site", "day", "queue", "last"), ("site", "day", "queue"),
                       "last = last + excluded.last") + " RETURNING last"
_ALLOCATION = ("SELECT op, site, day, queue, first, last FROM queue_allocations WHERE device = ? AND req = ?")


def _queue_of(row: tuple) -> dict:
    return dict(zip(_QUEUE, row))


def counter_queue_ids(db: Connection, site: str, counter: str) -> list[str]:
    """The queues a counter serves, in id order; [] for a counter that keeps the site's daily number."""
    rows = db.execute("SELECT queue FROM counter_queues WHERE site = ? AND counter = ? ORDER BY queue",
                      (site, counter)).fetchall()
    return [q for (q,) in rows]


def waiting_ahead(db: Connection, site: str, day: str, queue: str, priority: bool) -> int:
    """How many stored tickets of the queue wait before a new one: all of them, or the priority ones."""
    extra = " AND priority = 1" if priority else ""
    (n,) = db.execute("SELECT count(*) FROM queue_tickets WHERE site = ? AND day = ? AND queue = ?"
                      f" AND status = 'waiting'{extra}", (site, day, queue)).fetchone()
    return n


class Queues(StoreBase):
    # ----- the registry -------------------------------------------------------------------------

    def upsert_queue(self, site: str, queue: str, name: str, prefix: str) -> dict:
        """Create or change a queue; InUse if another queue of the site prints the same prefix."""
        try:
            check_queue_id(queue)
            check_queue_prefix(prefix)
        except ProtocolError as e:
            raise ValueError(str(e)) from None
        with self._write() as db:
            other = db.execute("SELECT queue FROM queues WHERE site = ? AND prefix = ? AND queue != ?",
                               (site, prefix, queue)).fetchone()
            if other is not None:
                raise InUse(f"prefix {prefix!r} is already printed by queue {other[0]!r} of site {site!r}")
            db.execute(_UPSERT_QUEUE, (site, queue, name, prefix))
        return {"site": site, "queue": queue, "name": name, "prefix": prefix}

    def queues(self, site: str | None = None) -> list[dict]:
        where, args = ("", ()) if site is None else (" WHERE site = ?", (site,))
        rows = self._rows(f"SELECT {', '.join(_QUEUE)} FROM queues{where} ORDER BY site, queue", args)
        return [_queue_of(row) for row in rows]

    def queue(self, site: str, queue: str) -> dict | None:
        rows = self._rows(f"SELECT {', '.join(_QUEUE)} FROM queues WHERE site = ? AND queue = ?", (site, queue))
        return _queue_of(rows[0]) if rows else None

    def delete_queue(self, site: str, queue: str) -> None:
        """Remove a queue and stop counters serving it; its tickets stay, as history."""
        with self._write() as db:
            db.execute("DELETE FROM queues WHERE site = ? AND queue = ?", (site, queue))
            db.execute("DELETE FROM counter_queues WHERE site = ? AND queue = ?", (site, queue))

    def counter_queues(self, site: str, counter: str) -> list[str]:
        with self._read() as db:
            return counter_queue_ids(db, site, counter)

    def all_counter_queues(self, site: str | None = None) -> dict[tuple[str, str], list[str]]:
        """(site, counter) -> the queues it serves, for every counter that serves any."""
        where, args = ("", ()) if site is None else (" WHERE site = ?", (site,))
        found: dict[tuple[str, str], list[str]] = {}
        for s, c, q in self._rows(f"SELECT site, counter, queue FROM counter_queues{where}"
                                  " ORDER BY site, counter, queue", args):
            found.setdefault((s, c), []).append(q)
        return found

    def set_counter_queues(self, site: str, counter: str, queues: list[str]) -> list[str]:
        """The counter serves exactly `queues` from now on ([]: the site's daily number, as before queues).

        ValueError naming the first queue the site does not have.
        """
        wanted = sorted(set(queues))
        with self._write() as db:
            known = {q for (q,) in db.execute("SELECT queue FROM queues WHERE site = ?", (site,))}
            missing = [q for q in wanted if q not in known]
            if missing:
                raise ValueError(f"site {site!r} has no queue {missing[0]!r} (create it first)")
            db.execute("DELETE FROM counter_queues WHERE site = ? AND counter = ?", (site, counter))
            db.executemany("INSERT INTO counter_queues (site, counter, queue) VALUES (?, ?, ?)",
                           [(site, counter, q) for q in wanted])
        return wanted

    # ----- numbers ------------------------------------------------------------------------------

    def allocate_number(self, device: str, req: str, site: str, day: str, queue: str, priority: bool,
                        at_ms: int) -> dict:
        """The next number of the queue for a kiosk's `take` request, durable before it is returned.

        {"queue", "prefix", "number", "ticket", "day", "ahead"}; QueueRefusal for an unknown queue or
        a day whose 999 numbers are used up.
        """
        day = parse_day(day)
        with self._write() as db:
            prefix, first, _ = self._allocate(db, device, req, "take", site, day, queue, 1, at_ms)
            ahead = waiting_ahead(db, site, day, queue, priority)
        return {"queue": queue, "prefix": prefix, "number": first, "ticket": format_ticket(prefix, first),
                "day": day, "ahead": ahead}

    def reserve_block(self, device: str, req: str, site: str, day: str, queue: str, size: int, at_ms: int) -> dict:
        """Take up to `size` numbers of the queue's `day` out of the sequence for one kiosk.

        {"queue", "prefix", "day", "first", "last"}; fewer than `size` near the end of the day's
        numbers; QueueRefusal when none are left or the queue is unknown.
        """
        if not 1 <= size <= MAX_NUMBER:
            raise ValueError(f"block size must be 1..{MAX_NUMBER}, got {size!r}")
        day = parse_day(day)
        with self._write() as db:
            prefix, first, last = self._allocate(db, device, req, "block", site, day, queue, size, at_ms)
        return {"queue": queue, "prefix": prefix, "day": day, "first": first, "last": last}

    def blocks(self, site: str, day: str) -> list[dict]:
        """The blocks reserved for a site's day, in the order they were reserved."""
        rows = self._rows("SELECT device, queue, first, last, at_ms FROM queue_allocations"
                          " WHERE site = ? AND day = ? AND op = 'block' ORDER BY at_ms, first",
                          (site, parse_day(day)))
        return [dict(zip(("device", "queue", "first", "last", "at_ms"), row)) for row in rows]

    def _allocate(self, db: Connection, device: str, req: str, op: str, site: str, day: str, queue: str,
                  size: int, at_ms: int) -> tuple[str, int, int]:
        row = db.execute("SELECT prefix FROM queues WHERE site = ? AND queue = ?", (site, queue)).fetchone()
        if row is None:
            raise QueueRefusal(f"unknown queue {queue!r} at site {site!r}")
        prefix = row[0]
        before = db.execute(_ALLOCATION, (device, req)).fetchone()
        if before is not None:
            if before[:4] != (op, site, day, queue):
                raise QueueRefusal(f"request {req!r} was already used for another {before[0]}")
            return prefix, before[4], before[5]
        (last,) = db.execute(_BUMP, (site, day, queue, size)).fetchone()
        first, last = last - size + 1, min(last, MAX_NUMBER)
        if first > MAX_NUMBER:
            # Raising rolls the bump back: the sequence stays at its end for the next request too.
            raise QueueRefusal(f"queue {queue!r} has given out all {MAX_NUMBER} numbers of {day}")
        db.execute("UPDATE queue_numbers SET last = ? WHERE site = ? AND day = ? AND queue = ?",
                   (last, site, day, queue))
        db.execute("INSERT INTO queue_allocations (device, req, op, site, day, queue, first, last, at_ms)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (device, req, op, site, day, queue, first, last, at_ms))
        return prefix, first, last

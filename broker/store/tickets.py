"""Queue tickets and calls: a take event becomes a waiting ticket, NEXT/RECALL/no-show move it.

A ticket is recorded in the ingest batch's own transaction as its take event is stored (see
broker.store.batch), so it exists exactly once whenever the event does; a take whose
(site, day, ticket) is already held is refused there and dead-lettered. A counted rating
carrying a ticket links to it in that transaction too. Calls are made after the batch is
committed (`queue_call`), from the stored call event, and logged in `queue_calls`, whose ids only
grow: the hall display and the dashboard poll it with `calls_after`.
"""
from __future__ import annotations

from zoneinfo import ZoneInfo

import broker.store.dialect as dialect
from broker.store.connection import StoreBase
from broker.store.dialect import Connection
from broker.store.queues import counter_queue_ids
from common.clock import Clock, now
from common.periods import DEFAULT_TZ, local_day, parse_day, zone
from protocol.tickets import parse_ticket

__all__ = ["TICKET_STATUSES", "Tickets", "link_ratings", "record_take"]

TICKET_STATUSES = ("waiting", "called", "done", "noshow")
_CALL = ("id", "site", "ts", "ticket", "queue", "counter", "officer", "action", "recall", "counter_name")
_CALL_SQL = ("SELECT c.id, c.site, c.ts, c.ticket, c.queue, c.counter, c.officer, c.action, c.recall,"
             " coalesce(n.name, '') FROM queue_calls AS c"
             " LEFT JOIN counters AS n ON n.site = c.site AND n.counter = c.counter")
_TICKET = ("id", "site", "date", "queue", "ticket", "priority", "status", "taken_ts", "called_ts", "recalls",
           "recalled_ts", "done_ts", "counter", "officer", "device", "source")
_TICKET_SQL = ("SELECT t.id, t.site, t.day, t.queue, t.ticket, t.priority, t.status, t.taken_ts, t.called_ts,"
               " t.recalls, t.recalled_ts, t.done_ts, t.counter, t.officer, t.device, t.source,"
               " e.id, e.ts, e.score, e.scale FROM queue_tickets AS t LEFT JOIN events AS e ON e.id = t.rating_event")
_SEEN_NUMBER = dialect.upsert("queue_numbers", ("site", "day", "queue", "last"), ("site", "day", "queue"),
                              f"last = {dialect.greatest('last', 'excluded.last')}")
_LINK = dialect.rows_by_keys("events", ("device", "ledger", "seq"),
                             "t.device, t.ledger, t.seq, t.id, t.site, t.counter, t.day")


def record_take(db: Connection, ev: dict, ts: int) -> str | None:
    """Store the ticket of a take event being stored at service time `ts`; the refusal if its number is taken."""
    site, day, ticket = ev["site"], ev["date"], ev["ticket"]
    holder = db.execute("SELECT device, ledger, seq FROM queue_tickets WHERE site = ? AND day = ? AND ticket = ?",
                        (site, day, ticket)).fetchone()
    if holder is not None:
        return (f"ticket {ticket} of {day} at site {site!r} is already held by take {holder[0]}/{holder[1]}/"
                f"{holder[2]}: a number is printed once")
    _, number = parse_ticket(ticket)
    db.execute("INSERT INTO queue_tickets (site, day, queue, ticket, number, priority, taken_ts, device, ledger, seq,"
               " source, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'waiting')",
               (site, day, ev["queue"], ticket, number, int(ev["priority"]), ts, ev["device"], ev["ledger"],
                ev["seq"], ev["source"]))
    # A number the service never handed out (a kiosk's own, a lost block record) must not be handed out again.
    db.execute(_SEEN_NUMBER, (site, day, ev["queue"], number))
    return None


def link_ratings(db: Connection, ratings: list[dict]) -> None:
    """Link counted ratings (inserted in this transaction) to the ticket each names at its counter; the first counts."""
    tickets = {(ev["device"], ev["ledger"], ev["seq"]): ev["ticket"] for ev in ratings}
    if not tickets:
        return
    for device, ledger, seq, event_id, site, counter, day in db.execute(_LINK, (dialect.key_list(tickets),)).fetchall():
        db.execute("UPDATE queue_tickets SET rating_event = ? WHERE site = ? AND day = ? AND ticket = ?"
                   " AND counter = ? AND rating_event IS NULL",
                   (event_id, site, day, tickets[device, ledger, seq], counter))


class Tickets(StoreBase):
    def queue_call(self, device: str, ledger: str, seq: int, live: bool) -> dict | None:
        """Apply a stored call event at a counter that serves queues, once; None for a counter that serves none.

        next/noshow finish the counter's current ticket (done/no-show) and, if `live` (the counter
        waits for the answer), call the oldest waiting ticket of its queues, priority first; recall
        calls the current one again; close finishes it. {"ticket": str | None, "call": id | None}:
        ticket None means nobody is waiting (the idle sign) or nothing to answer. An event applied
        before changes nothing and gets its first ticket again, with "again" true.
        """
        key = (device, ledger, seq)
        with self._write() as db:
            row = db.execute("SELECT site, counter, officer, ts, action FROM events WHERE device = ? AND ledger = ?"
                             " AND seq = ? AND type = 'call' AND held IS NULL", key).fetchone()
            if row is None or not counter_queue_ids(db, row[0], row[1]):
                return None
            before = db.execute("SELECT ticket FROM queue_applied WHERE device = ? AND ledger = ? AND seq = ?",
                                key).fetchone()
            if before is not None:
                return {"ticket": before[0], "call": None, "again": True}
            result = _apply(_Call(db, *row[:4], key), row[4], live)
            db.execute("INSERT INTO queue_applied (device, ledger, seq, ticket) VALUES (?, ?, ?, ?)",
                       (*key, result["ticket"]))
        return result

    def tickets(self, site: str, day: str) -> list[dict]:
        """A site's tickets of a day in the order they were taken, with their times and counted rating."""
        rows = self._rows(f"{_TICKET_SQL} WHERE t.site = ? AND t.day = ? ORDER BY t.taken_ts, t.id",
                          (site, parse_day(day)))
        return [_ticket_dict(row) for row in rows]

    def calls_after(self, site: str, after_id: int = 0, limit: int = 100) -> list[dict]:
        """The site's calls with an id above `after_id`, oldest first (poll with the last id seen)."""
        rows = self._rows(f"{_CALL_SQL} WHERE c.site = ? AND c.id > ? ORDER BY c.id LIMIT ?",
                          (site, after_id, limit))
        return [_call_dict(row) for row in rows]

    def recent_calls(self, site: str, limit: int = 10) -> list[dict]:
        """The site's last `limit` calls, newest first."""
        rows = self._rows(f"{_CALL_SQL} WHERE c.site = ? ORDER BY c.id DESC LIMIT ?", (site, limit))
        return [_call_dict(row) for row in rows]

    def waiting_counts(self, site: str, day: str | None = None, clock: Clock = now) -> dict[str, int]:
        """{queue: tickets waiting} for every queue of the site, on `day` (default: the site's today)."""
        with self._read() as db:
            day = parse_day(day) if day is not None else _site_day(db, site, int(clock() * 1000))
            counts = {q: 0 for (q,) in db.execute("SELECT queue FROM queues WHERE site = ?", (site,))}
            for queue, n in db.execute("SELECT queue, count(*) FROM queue_tickets WHERE site = ? AND day = ?"
                                       " AND status = 'waiting' GROUP BY queue", (site, day)):
                counts[queue] = n
        return counts


def _apply(call: "_Call", action: str, live: bool) -> dict:
    if action == "recall":
        return call.recall()
    call.finish("noshow" if action == "noshow" else "done")
    if action == "close" or not live:
        return {"ticket": None, "call": None}
    return call.next(_site_day(call.db, call.site, call.ts), action)


class _Call:
    """One call at a counter, inside the caller's write transaction."""

    def __init__(self, db: Connection, site: str, counter: str, officer: str | None, ts: int, key: tuple) -> None:
        self.db, self.site, self.counter, self.officer, self.ts, self.key = db, site, counter, officer, ts, key

    def current(self) -> tuple | None:
        return self.db.execute("SELECT id, ticket, queue FROM queue_tickets WHERE site = ? AND counter = ?"
                               " AND status = 'called' ORDER BY called_ts DESC, id DESC LIMIT 1",
                               (self.site, self.counter)).fetchone()

    def finish(self, status: str) -> None:
        self.db.execute("UPDATE queue_tickets SET status = ?, done_ts = ? WHERE site = ? AND counter = ?"
                        " AND status = 'called'", (status, self.ts, self.site, self.counter))

    def recall(self) -> dict:
        current = self.current()
        if current is None:
            return {"ticket": None, "call": None}
        self.db.execute("UPDATE queue_tickets SET recalls = recalls + 1, recalled_ts = ? WHERE id = ?",
                        (self.ts, current[0]))
        return {"ticket": current[1], "call": self._log(current[1], current[2], "recall")}

    def next(self, day: str, action: str) -> dict:
        queues = counter_queue_ids(self.db, self.site, self.counter)
        marks = ", ".join("?" * len(queues))
        found = self.db.execute(
            f"SELECT id, ticket, queue FROM queue_tickets WHERE site = ? AND day = ? AND queue IN ({marks})"
            " AND status = 'waiting' ORDER BY priority DESC, taken_ts, id LIMIT 1",
            (self.site, day, *queues)).fetchone()
        if found is None:
            return {"ticket": None, "call": None}
        self.db.execute("UPDATE queue_tickets SET status = 'called', counter = ?, officer = ?, called_ts = ?"
                        " WHERE id = ?", (self.counter, self.officer, self.ts, found[0]))
        return {"ticket": found[1], "call": self._log(found[1], found[2], action)}

    def _log(self, ticket: str, queue: str, action: str) -> int:
        # RETURNING rather than lastrowid: PostgreSQL's driver has no lastrowid.
        (call_id,) = self.db.execute(
            "INSERT INTO queue_calls (site, ts, ticket, queue, counter, officer, action, recall, device, ledger, seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (self.site, self.ts, ticket, queue, self.counter, self.officer, action, int(action == "recall"),
             *self.key)).fetchone()
        return call_id


def _site_day(db: Connection, site: str, ms: int) -> str:
    row = db.execute("SELECT tz FROM sites WHERE id = ?", (site,)).fetchone()
    tz: ZoneInfo = zone(row[0] if row else DEFAULT_TZ)
    return local_day(ms, tz)


def _call_dict(row: tuple) -> dict:
    call = dict(zip(_CALL, row))
    call["recall"] = bool(call["recall"])
    return call


def _ticket_dict(row: tuple) -> dict:
    ticket = dict(zip(_TICKET, row[:len(_TICKET)]))
    ticket["priority"] = bool(ticket["priority"])
    event_id, rated_ts, score, scale = row[len(_TICKET):]
    ticket["rated_ts"] = rated_ts
    ticket["rating"] = None if event_id is None else {"event": event_id, "score": score, "scale": scale}
    return ticket

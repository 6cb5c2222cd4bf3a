"""Alerts and their history, and the outbox their notices leave through.

An alert is open from `opened_ms` until `resolved_ms`; the unique index alerts_open keeps
one open alert per (rule, subject), whoever calls. Opening or resolving an alert queues its
notices in the same transaction (`apply_alerts`), so none is lost to a crash or a channel
that is down; the sender marks each one sent (`outbox_sent`) or due again later
(`outbox_failed`). Before sending, a sender claims the notice (`outbox_claim`), so that of several
service instances only one sends it.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from broker.store.connection import StoreBase
from broker.store.sites import site_filter

__all__ = ["Alerts", "Notice"]

# (channel, site, body as a dict): what one alert's opening or resolving sends, decided by the caller.
Notice = tuple[str, str | None, dict]
Notices = Callable[[dict, str], Iterable[Notice]]

_COLUMNS = "id, rule, subject, site, opened_ms, resolved_ms, acked_by, acked_ms, details"
MAX_ALERTS = 1000  # one page of the history


def alert_of(row: tuple) -> dict:
    id_, rule, subject, site, opened, resolved, acked_by, acked_ms, details = row
    return {"id": id_, "rule": rule, "subject": subject, "site": site, "opened_ms": opened,
            "resolved_ms": resolved, "state": "open" if resolved is None else "resolved",
            "acked_by": acked_by, "acked_ms": acked_ms, "details": json.loads(details)}


def _queue(db, alert: dict, kind: str, notices: Notices, at_ms: int) -> None:
    for channel, site, body in notices(alert, kind):
        db.execute("INSERT INTO alert_outbox (alert, kind, channel, site, body, created_ms, next_ms)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (alert["id"], kind, channel, site, json.dumps(body, ensure_ascii=False), at_ms, at_ms))


class Alerts(StoreBase):
    def open_alerts(self, sites: Iterable[str] | None = None) -> list[dict]:
        more, args = site_filter(sites)
        return [alert_of(r) for r in self._rows(
            f"SELECT {_COLUMNS} FROM alerts WHERE resolved_ms IS NULL{more} ORDER BY opened_ms, id", args)]

    def open_alert_count(self, sites: Iterable[str] | None = None) -> int:
        """Open alerts, of `sites` only if given (a scoped principal: a service-wide alert has no site)."""
        more, args = site_filter(sites)
        return self._rows(f"SELECT count(*) FROM alerts WHERE resolved_ms IS NULL{more}", args)[0][0]

    def alerts(self, state: str = "open", from_ms: int | None = None, to_ms: int | None = None,
               limit: int = MAX_ALERTS, sites: Iterable[str] | None = None) -> list[dict]:
        """Newest first. state "open" or "all"; from/to bound when they were opened (to exclusive);
        `sites`: only alerts of those sites (None: every alert)."""
        if state not in ("open", "all"):
            raise ValueError(f"state must be open or all, got {state!r}")
        more, more_args = site_filter(sites)
        where, args = ["1 = 1" + more], list(more_args)
        if state == "open":
            where.append("resolved_ms IS NULL")
        if from_ms is not None:
            where.append("opened_ms >= ?")
            args.append(from_ms)
        if to_ms is not None:
            where.append("opened_ms < ?")
            args.append(to_ms)
        return [alert_of(r) for r in self._rows(
            f"SELECT {_COLUMNS} FROM alerts WHERE {' AND '.join(where)} ORDER BY opened_ms DESC, id DESC LIMIT ?",
            (*args, limit))]

    def alert(self, id_: int) -> dict | None:
        rows = self._rows(f"SELECT {_COLUMNS} FROM alerts WHERE id = ?", (id_,))
        return alert_of(rows[0]) if rows else None

    def apply_alerts(self, opened: Iterable[tuple[str, str, str | None, dict]], cleared: Iterable[tuple[str, str]],
                     notices: Notices, at_ms: int) -> tuple[list[dict], list[dict]]:
        """Open the (rule, subject, site, details) not open yet, resolve the open (rule, subject)s in `cleared`,
        and queue each one's notices, all in one transaction. Returns (newly opened, newly resolved)."""
        new, done = [], []
        with self._write() as db:
            for rule, subject, site, details in opened:
                row = db.execute(
                    "INSERT INTO alerts (rule, subject, site, opened_ms, details) VALUES (?, ?, ?, ?, ?)"
                    f" ON CONFLICT (rule, subject) WHERE resolved_ms IS NULL DO NOTHING RETURNING {_COLUMNS}",
                    (rule, subject, site, at_ms, json.dumps(details, ensure_ascii=False))).fetchone()
                if row is not None:
                    new.append(alert_of(row))
                    _queue(db, new[-1], "open", notices, at_ms)
            for rule, subject in cleared:
                row = db.execute(f"UPDATE alerts SET resolved_ms = ? WHERE rule = ? AND subject = ?"
                                 f" AND resolved_ms IS NULL RETURNING {_COLUMNS}", (at_ms, rule, subject)).fetchone()
                if row is not None:
                    done.append(alert_of(row))
                    _queue(db, done[-1], "resolve", notices, at_ms)
        return new, done

    def ack_alert(self, id_: int, by: str, at_ms: int) -> dict | None:
        """Record who acknowledged the alert and when (the first acknowledgement stands); None if no such alert."""
        with self._write() as db:
            db.execute("UPDATE alerts SET acked_by = ?, acked_ms = ? WHERE id = ? AND acked_by IS NULL",
                       (by, at_ms, id_))
        return self.alert(id_)

    def queue_summary(self, site: str, day: str, notices: Iterable[Notice], at_ms: int) -> bool:
        """Queue a site's daily summary once per day; False if it was queued before."""
        with self._write() as db:
            if db.execute("INSERT INTO alert_summaries VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING site",
                          (site, day)).fetchone() is None:
                return False
            _queue(db, {"id": None}, "summary", lambda *_: notices, at_ms)
        return True

    # ----- the outbox ------------------------------------------------------------------------

    def outbox_due(self, now_ms: int, limit: int = 50) -> list[dict]:
        rows = self._rows("SELECT id, alert, kind, channel, site, body, attempts FROM alert_outbox"
                          " WHERE sent_ms IS NULL AND next_ms <= ? ORDER BY next_ms, id LIMIT ?", (now_ms, limit))
        return [{"id": i, "alert": a, "kind": k, "channel": c, "site": s, "body": json.loads(b), "attempts": n}
                for i, a, k, c, s, b, n in rows]

    def outbox_claim(self, id_: int, now_ms: int, until_ms: int) -> bool:
        """Take a due notice for one sender until `until_ms`; False if it is not due any more.

        Several service instances run a sender each over one outbox: the claim decides which one
        sends. An instance that dies mid-send leaves the notice due again at `until_ms`, for any.
        """
        with self._write() as db:
            return db.execute("UPDATE alert_outbox SET next_ms = ? WHERE id = ? AND sent_ms IS NULL AND next_ms <= ?"
                              " RETURNING id", (until_ms, id_, now_ms)).fetchone() is not None

    def outbox_sent(self, id_: int, at_ms: int) -> None:
        with self._write() as db:
            db.execute("UPDATE alert_outbox SET sent_ms = ?, attempts = attempts + 1, last_error = NULL"
                       " WHERE id = ?", (at_ms, id_))

    def outbox_failed(self, id_: int, error: str, next_ms: int) -> None:
        with self._write(durable=False) as db:  # a lost failure only means one more early retry
            db.execute("UPDATE alert_outbox SET attempts = attempts + 1, last_error = ?, next_ms = ? WHERE id = ?",
                       (error[:500], next_ms, id_))

    def outbox_pending(self) -> int:
        return self._rows("SELECT count(*) FROM alert_outbox WHERE sent_ms IS NULL")[0][0]

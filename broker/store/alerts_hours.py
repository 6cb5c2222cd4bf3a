"""Opening hours and alert recipients per site, and the facts the alert rules read.

The hours are stored as the JSON of broker.alerts.hours.Hours (validated by the caller: the
store does not know the calendar's rules); a site without a row uses the service's default.
"""
from __future__ import annotations

import json

import broker.store.dialect as dialect
from broker.store.connection import StoreBase
from broker.store.devices import COLUMNS, device_of

__all__ = ["SiteHours", "RATINGS_READ"]

# The rules look at each officer's latest ratings; this many of the newest counted ratings of
# the whole service cover the last N of every officer who worked today at a busy centre
# (250 officers x 20), read newest first by rowid, so the query never scans the events table.
RATINGS_READ = 5000

_SET = dialect.upsert("site_hours", ("site", "hours", "email_to", "updated_ms", "updated_by"), ("site",),
                      "hours = excluded.hours, email_to = excluded.email_to, updated_ms = excluded.updated_ms,"
                      " updated_by = excluded.updated_by")

_RATINGS = ("SELECT officer, site, counter, scale, score, ts FROM events WHERE type = 'rating' AND held IS NULL"
            " AND discarded_ms IS NULL AND flagged = 0 AND officer IS NOT NULL ORDER BY id DESC LIMIT ?")
# The misuse page's covering index (schema v3) answers this without touching the events table.
_FLAGGED = ("SELECT site, counter, count(*) FROM events WHERE day IN (?, ?, ?) AND flagged = 1 AND held IS NULL"
            " AND ts >= ? GROUP BY site, counter")


def _row(row: tuple) -> dict:
    site, hours, email_to, updated_ms, updated_by = row
    return {"site": site, "hours": json.loads(hours), "email_to": json.loads(email_to),
            "updated_ms": updated_ms, "updated_by": updated_by}


class SiteHours(StoreBase):
    def site_hours(self, site: str) -> dict | None:
        """{"site", "hours": {"weekly", "closed"}, "email_to", "updated_ms", "updated_by"}, or None if never set."""
        rows = self._rows("SELECT site, hours, email_to, updated_ms, updated_by FROM site_hours WHERE site = ?",
                          (site,))
        return _row(rows[0]) if rows else None

    def all_site_hours(self) -> dict[str, dict]:
        return {r[0]: _row(r) for r in self._rows(
            "SELECT site, hours, email_to, updated_ms, updated_by FROM site_hours ORDER BY site")}

    def set_site_hours(self, site: str, hours: dict, email_to: list[str], at_ms: int, by: str | None) -> dict:
        with self._write() as db:
            db.execute(_SET, (site, json.dumps(hours, separators=(",", ":")),
                              json.dumps(list(email_to), ensure_ascii=False), at_ms, by))
        return self.site_hours(site)

    def alert_facts(self, days: tuple[str, str, str], hour_ago_ms: int) -> dict:
        """What the rules read, in one snapshot: registered devices, the latest ratings (newest first),
        and flagged presses per counter since `hour_ago_ms`. `days`: the service's local yesterday, today
        and tomorrow, which hold the last hour's site-local days of every site within a day's zone offset."""
        with self._read() as db:
            devices = [device_of(r) for r in db.execute(
                f"SELECT {COLUMNS} FROM devices WHERE registered = 1 AND site IS NOT NULL ORDER BY id")]
            ratings = [dict(zip(("officer", "site", "counter", "scale", "score", "ts"), r))
                       for r in db.execute(_RATINGS, (RATINGS_READ,))]
            flagged = {(s, c): n for s, c, n in db.execute(_FLAGGED, (*days, hour_ago_ms))}
            officers = dict(db.execute("SELECT id, name FROM officers").fetchall())
            counters = {(s, c): n for s, c, n in db.execute("SELECT site, counter, name FROM counters")}
            sites = {r[0]: {"name": r[1], "tz": r[2]} for r in db.execute("SELECT id, name, tz FROM sites")}
        return {"devices": devices, "ratings": ratings, "flagged": flagged, "officers": officers,
                "counters": counters, "sites": sites}

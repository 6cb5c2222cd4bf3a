"""The dashboard's queries: the overview, one officer's page, misuse, who sits where now.

All of them read the rollups (rating_days/months, call_days) or walk the events table by
its primary key from the newest end, so a page stays fast with millions of events.
The one exception, flagged presses by hour, uses the partial covering index `events_flagged_hours`
(flagged rows only), created by migration 2. Ratings are "counted" unless flagged; flagged
presses are always reported apart, never inside a count of ratings.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import datetime

import broker.store.dialect as dialect
import broker.store.rollups as rollups
from broker import stats
from broker.store.connection import StoreBase
from broker.store.registry import names_of
from common.periods import DEFAULT_TZ, zone

__all__ = ["Dashboard"]

_LATEST = ("SELECT e.id, e.ts, e.site, e.counter, e.officer, o.name, e.scale, e.score, e.flagged, e.body,"
           " c.name FROM events AS e LEFT JOIN officers AS o ON o.id = e.officer"
           " LEFT JOIN counters AS c ON c.site = e.site AND c.counter = e.counter WHERE e.type = 'rating'")
_FLAGGED_HOURS = dialect.indexed_by("events", "events_flagged_hours")


class Dashboard(StoreBase):
    # ----- overview ------------------------------------------------------------------

    def rating_totals(self, first: str, last: str, *, satisfied_from: int | None = None) -> dict:
        """Figures over every site and counter for the days first..last (inclusive), from the rollups."""
        parts, args = rollups.over_days("rating", "scale, score, flagged, n", first, last)
        rows = self._rows(f"SELECT scale, score, flagged, sum(n) FROM ({parts}) GROUP BY scale, score, flagged",
                          tuple(args))
        counts: dict[int, dict[int, int]] = {}
        by_scale: Counter[int] = Counter()
        flagged = 0
        for scale, score, flag, n in rows:
            by_scale[scale] += n
            per = counts.setdefault(scale, {})
            if flag:
                flagged += n
            else:
                per[score] = per.get(score, 0) + n
        if not by_scale:
            return {"scale": None, "ratings": 0, "counts": {}, "satisfied": 0, "rate": None, "mean": None,
                    "index": None, "wilson_lower": 0.0, "flagged": 0}
        scale = max(by_scale, key=lambda s: (by_scale[s], s))
        return {"scale": scale, **stats.summarize_scales(counts, scale, flagged, satisfied_from)}

    def latest_ratings(self, limit: int = 20, after_id: int | None = None) -> list[dict]:
        """The newest ratings, newest first; with after_id, those stored after it, oldest first."""
        if after_id is None:
            rows = self._rows(_LATEST + " ORDER BY e.id DESC LIMIT ?", (limit,))
        else:
            rows = self._rows(_LATEST + " AND e.id > ? ORDER BY e.id LIMIT ?", (after_id, limit))
        out = []
        for id_, ts, site, counter, officer, name, scale, score, flagged, body, counter_name in rows:
            try:
                flags = list(json.loads(body).get("flags") or [])
            except ValueError:
                flags = []
            out.append({"id": id_, "ts": ts, "site": site, "counter": counter, "counter_name": counter_name or "",
                        "officer": officer, "officer_name": name or officer, "scale": scale, "score": score,
                        "flagged": bool(flagged), "flags": flags})
        return out

    def last_event_id(self) -> int:
        return self._rows("SELECT coalesce(max(id), 0) FROM events")[0][0]

    # ----- one officer ---------------------------------------------------------------

    def officer_days(self, officer: str | None, first: str, last: str) -> list[tuple]:
        """(day, scale, score, flagged, n) of the officer's ratings per day; officer None: unattributed."""
        return self._rows(
            "SELECT day, scale, score, flagged, sum(n) FROM rating_days WHERE day BETWEEN ? AND ?"
            " AND officer = ? GROUP BY day, scale, score, flagged ORDER BY day", (first, last, officer or ""))

    def officer_calls(self, officer: str | None, first: str, last: str) -> dict[str, int]:
        return dict(self._rows("SELECT action, sum(n) FROM call_days WHERE day BETWEEN ? AND ? AND officer = ?"
                               " GROUP BY action", (first, last, officer or "")))

    def officer_counters(self, officer: str | None, first: str, last: str) -> list[dict]:
        """Counters where the officer has ratings or calls in the period, with how many of each.

        "ratings" counts the counted ratings only, like the officer's figures; "flagged" the flagged presses.
        """
        args = (first, last, officer or "")
        with self._read() as db:
            rows = db.execute(
                "SELECT site, counter, sum(r), sum(f), sum(c) FROM ("
                " SELECT site, counter, CASE WHEN flagged = 0 THEN n ELSE 0 END AS r,"
                " CASE WHEN flagged = 0 THEN 0 ELSE n END AS f, 0 AS c"
                " FROM rating_days WHERE day BETWEEN ? AND ? AND officer = ?"
                " UNION ALL"
                " SELECT site, counter, 0, 0, n FROM call_days WHERE day BETWEEN ? AND ? AND officer = ?)"
                " GROUP BY site, counter ORDER BY site, counter", args + args).fetchall()
            names = names_of(db, "counter")
        return [{"site": s, "counter": c, "name": names.get((s, c)) or "", "ratings": r, "flagged": f, "calls": k}
                for s, c, r, f, k in rows]

    # ----- misuse --------------------------------------------------------------------

    def flagged_by_counter(self, first: str, last: str) -> list[dict]:
        """Per counter: flagged presses and all presses in the period, from the rollups."""
        parts, args = rollups.over_days("rating", "site, counter, flagged, n", first, last)
        with self._read() as db:
            rows = db.execute(f"SELECT site, counter, sum(CASE WHEN flagged = 1 THEN n ELSE 0 END), sum(n)"
                              f" FROM ({parts}) GROUP BY site, counter", args).fetchall()
            names = names_of(db, "counter")
        out = [{"site": s, "counter": c, "name": names.get((s, c)) or "", "flagged": f, "presses": total,
                "share": f / total if total else None} for s, c, f, total in rows if f]
        return sorted(out, key=lambda r: (-r["flagged"], r["site"], r["counter"]))

    def flagged_by_hour(self, first: str, last: str, default_tz: str = DEFAULT_TZ) -> dict[tuple[str, str], Counter]:
        """(site, counter) -> Counter(local hour of day -> flagged presses) for the days first..last."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT site, counter, ts / 3600000, count(*) FROM {_FLAGGED_HOURS}"
                " WHERE flagged = 1 AND day BETWEEN ? AND ? GROUP BY site, counter, ts / 3600000",
                (first, last)).fetchall()
            zones = dict(db.execute("SELECT id, tz FROM sites").fetchall())
        out: dict[tuple[str, str], Counter] = defaultdict(Counter)
        for site, counter, hour_epoch, n in rows:
            tz = zone(zones.get(site) or default_tz)
            hour = datetime.fromtimestamp(hour_epoch * 3600, tz).hour
            out[site, counter][hour] += n
        return out

    # ----- counters ------------------------------------------------------------------

    def current_assignments(self) -> dict[tuple[str, str], str | None]:
        """(site, counter) -> the officer assigned now (latest change point), None for nobody."""
        rows = self._rows(
            "SELECT a.site, a.counter, a.officer FROM assignments AS a"
            " JOIN (SELECT site, counter, max(start_ms) AS m FROM assignments GROUP BY site, counter) AS l"
            " ON l.site = a.site AND l.counter = a.counter AND l.m = a.start_ms")
        return {(s, c): o for s, c, o in rows}

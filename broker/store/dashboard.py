"""The dashboard's queries: the overview, one officer's page, misuse, who sits where now.

All of them read the rollups (rating_days/months, call_days) or walk the events table by
its primary key from the newest end, so a page stays fast with millions of events.
The one exception, flagged presses by hour, uses the partial covering index `events_flagged_hours`
(counted flagged rows only), created by migration 2 and narrowed by migration 3. Ratings are
"counted" unless flagged; flagged presses are always reported apart, never inside a count of
ratings. Held events (broker.store.held) are in none of these figures.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime

import broker.store.dialect as dialect
import broker.store.rollups as rollups
from broker import stats
from broker.store.connection import StoreBase
from broker.store.registry import names_of
from broker.store.sites import site_filter
from common.periods import DEFAULT_TZ, zone

__all__ = ["Dashboard"]

_LATEST = ("SELECT e.id, e.ts, e.site, e.counter, e.officer, o.name, e.scale, e.score, e.flagged, e.body,"
           " c.name FROM events AS e LEFT JOIN officers AS o ON o.id = e.officer"
           " LEFT JOIN counters AS c ON c.site = e.site AND c.counter = e.counter"
           " WHERE e.type = 'rating' AND e.held IS NULL")
_FLAGGED_HOURS = dialect.indexed_by("events", "events_flagged_hours")


class Dashboard(StoreBase):
    # ----- overview ------------------------------------------------------------------

    def rating_totals(self, first: str, last: str, *, satisfied_from: int | None = None,
                      sites: Iterable[str] | None = None) -> dict:
        """Figures over every counter of `sites` (None: every site) for the days first..last (inclusive)."""
        where, chosen = site_filter(sites)
        parts, args = rollups.over_days("rating", "scale, score, flagged, n", first, last, where, chosen)
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

    def latest_ratings(self, limit: int = 20, after_id: int | None = None,
                       sites: Iterable[str] | None = None) -> list[dict]:
        """The latest ratings at `sites` (None: every site) by the time they were given, latest first;
        with after_id, those stored after it, in storage order (what the live feed sends next).

        By event time, not storage order: a counter back from an outage stores its backlog late,
        and a storage-ordered list would show it as the latest. The partial indexes of migration 7
        walk the newest ratings by time, per site for a scoped principal.
        """
        if after_id is not None:
            where, args = site_filter(sites, "e.site")
            rows = self._rows(_LATEST + f"{where} AND e.id > ? ORDER BY e.id LIMIT ?", (*args, after_id, limit))
        elif sites is None:
            rows = self._rows(_LATEST + " ORDER BY e.ts DESC, e.id DESC LIMIT ?", (limit,))
        else:
            with self._read() as db:
                rows = [row for site in sorted(sites) for row in db.execute(
                    _LATEST + " AND e.site = ? ORDER BY e.ts DESC, e.id DESC LIMIT ?", (site, limit)).fetchall()]
            rows = sorted(rows, key=lambda r: (r[1], r[0]), reverse=True)[:limit]
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

    def officer_days(self, officer: str | None, first: str, last: str,
                     sites: Iterable[str] | None = None) -> list[tuple]:
        """(day, scale, score, flagged, n) of the officer's ratings per day; officer None: unattributed."""
        where, chosen = site_filter(sites)
        return self._rows(
            "SELECT day, scale, score, flagged, sum(n) FROM rating_days WHERE day BETWEEN ? AND ?"
            f" AND officer = ?{where} GROUP BY day, scale, score, flagged ORDER BY day",
            (first, last, officer or "", *chosen))

    def officer_calls(self, officer: str | None, first: str, last: str,
                      sites: Iterable[str] | None = None) -> dict[str, int]:
        where, chosen = site_filter(sites)
        return dict(self._rows("SELECT action, sum(n) FROM call_days WHERE day BETWEEN ? AND ? AND officer = ?"
                               f"{where} GROUP BY action", (first, last, officer or "", *chosen)))

    def officer_counters(self, officer: str | None, first: str, last: str,
                         sites: Iterable[str] | None = None) -> list[dict]:
        """Counters (at `sites`, None: any) where the officer has ratings or calls in the period.

        "ratings" counts the counted ratings only, like the officer's figures; "flagged" the flagged presses.
        """
        where, chosen = site_filter(sites)
        args = (first, last, officer or "", *chosen)
        with self._read() as db:
            rows = db.execute(
                "SELECT site, counter, sum(r), sum(f), sum(c) FROM ("
                " SELECT site, counter, CASE WHEN flagged = 0 THEN n ELSE 0 END AS r,"
                " CASE WHEN flagged = 0 THEN 0 ELSE n END AS f, 0 AS c"
                f" FROM rating_days WHERE day BETWEEN ? AND ? AND officer = ?{where}"
                " UNION ALL"
                f" SELECT site, counter, 0, 0, n FROM call_days WHERE day BETWEEN ? AND ? AND officer = ?{where})"
                " GROUP BY site, counter ORDER BY site, counter", args + args).fetchall()
            names = names_of(db, "counter")
        return [{"site": s, "counter": c, "name": names.get((s, c)) or "", "ratings": r, "flagged": f, "calls": k}
                for s, c, r, f, k in rows]

    # ----- misuse --------------------------------------------------------------------

    def flagged_by_counter(self, first: str, last: str, sites: Iterable[str] | None = None) -> list[dict]:
        """Per counter (at `sites`, None: every site): flagged presses and all presses in the period."""
        where, chosen = site_filter(sites)
        parts, args = rollups.over_days("rating", "site, counter, flagged, n", first, last, where, chosen)
        with self._read() as db:
            rows = db.execute(f"SELECT site, counter, sum(CASE WHEN flagged = 1 THEN n ELSE 0 END), sum(n)"
                              f" FROM ({parts}) GROUP BY site, counter", args).fetchall()
            names = names_of(db, "counter")
        out = [{"site": s, "counter": c, "name": names.get((s, c)) or "", "flagged": f, "presses": total,
                "share": f / total if total else None} for s, c, f, total in rows if f]
        return sorted(out, key=lambda r: (-r["flagged"], r["site"], r["counter"]))

    def flagged_by_hour(self, first: str, last: str, default_tz: str = DEFAULT_TZ,
                        sites: Iterable[str] | None = None) -> dict[tuple[str, str], Counter]:
        """(site, counter) -> Counter(local hour of day -> flagged presses) for the days first..last."""
        where, chosen = site_filter(sites)
        with self._read() as db:
            rows = db.execute(
                f"SELECT site, counter, ts / 3600000, count(*) FROM {_FLAGGED_HOURS}"
                f" WHERE flagged = 1 AND held IS NULL AND day BETWEEN ? AND ?{where}"
                " GROUP BY site, counter, ts / 3600000", (first, last, *chosen)).fetchall()
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

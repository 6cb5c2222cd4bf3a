"""Answers by site, for scoped principals and the province view: the SQL filter every site-aware query
takes, which officers a set of sites has seen, and each site's figures per day.

An officer belongs to no site in the registry; a site "has seen" an officer who sat at one of its
counters (assignments) or was rated or called there (the month rollups). An officer nobody has
seen anywhere yet carries no evaluation, so every principal may see (and assign) them.
"""
from __future__ import annotations

from collections.abc import Iterable

import broker.store.rollups as rollups
from broker.store.connection import StoreBase

__all__ = ["Sites", "site_filter"]

_SEEN = ("SELECT officer, site FROM assignments WHERE officer IS NOT NULL"
         " UNION SELECT officer, site FROM rating_months WHERE officer != ''"
         " UNION SELECT officer, site FROM call_months WHERE officer != ''")


def site_filter(sites: Iterable[str] | None, column: str = "site") -> tuple[str, tuple]:
    """(" AND column IN (...)", its arguments) for a set of sites; nothing for None (every site).

    An empty set matches no row: a principal whose sites were all taken away sees nothing.
    """
    if sites is None:
        return "", ()
    chosen = tuple(sorted(sites))
    return f" AND {column} IN ({', '.join('?' * len(chosen))})", chosen


class Sites(StoreBase):
    def officer_sites(self, officer: str) -> set[str]:
        """The sites that have seen this officer (see the module's doc)."""
        return {site for (site,) in self._rows(f"SELECT site FROM ({_SEEN}) WHERE officer = ?", (officer,))}

    def officers_seen(self, sites: Iterable[str] | None) -> set[str] | None:
        """Ids of the officers a principal limited to `sites` may see: those seen at one of them or
        nowhere yet. None for every site (no limit)."""
        if sites is None:
            return None
        where, args = site_filter(sites)
        with self._read() as db:
            every = {o for (o,) in db.execute("SELECT id FROM officers").fetchall()}
            placed = {o for (o,) in db.execute(f"SELECT DISTINCT officer FROM ({_SEEN})").fetchall()}
            here = {o for (o,) in db.execute(f"SELECT DISTINCT officer FROM ({_SEEN}) WHERE 1 = 1{where}",
                                             args).fetchall()}
        return (every - placed) | here

    def site_days(self, first: str, last: str, sites: Iterable[str] | None = None) -> list[tuple]:
        """(site, day, scale, score, flagged, n) of the ratings per site and day, days first..last."""
        where, args = site_filter(sites)
        return self._rows("SELECT site, day, scale, score, flagged, sum(n) FROM rating_days"
                          f" WHERE day BETWEEN ? AND ?{where} GROUP BY site, day, scale, score, flagged"
                          " ORDER BY site, day", (first, last, *args))

    def site_totals(self, first: str, last: str, sites: Iterable[str] | None = None) -> list[tuple]:
        """(scale, score, flagged, n) summed over the sites (every site for None), days first..last."""
        where, args = site_filter(sites)
        parts, params = rollups.over_days("rating", "scale, score, flagged, n", first, last, where, args)
        return self._rows(f"SELECT scale, score, flagged, sum(n) FROM ({parts}) GROUP BY scale, score, flagged",
                          tuple(params))

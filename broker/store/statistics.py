"""What the store answers about what it holds: satisfaction, reasons, the events, dead letters, totals.

Satisfaction reads only the rollups, so a month's report never reads the events table;
the figures themselves are broker.stats' pure functions.
"""
from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterable

import broker.store.dialect as dialect
import broker.store.rollups as rollups
from broker import stats
from broker.store.connection import StoreBase
from broker.store.registry import names_of
from broker.store.sites import site_filter
from common.periods import parse_day

__all__ = ["GROUPS", "Statistics", "UNATTRIBUTED"]

UNATTRIBUTED = "(không rõ)"  # the name shown for ratings no officer could be attributed to
GROUPS = ("officer", "counter", "site")
_GROUP_COLUMNS = {"officer": "officer", "counter": "site, counter", "site": "site"}
_EVENT_KEYS = ("id", "device", "ledger", "seq", "type", "site", "counter", "ts", "ts_source", "day",
               "received_ms", "officer", "officer_source", "held", "discarded_ms")


class Statistics(StoreBase):
    def satisfaction(self, group: str, date_from: str, date_to: str, *, site: str | None = None,
                     satisfied_from: int | None = None, sites: Iterable[str] | None = None) -> dict:
        """Ranked satisfaction per officer, counter ("site/counter") or site, days inclusive.

        `site` and `sites` (a set; None: every site) both narrow the ratings read.

        Read from the rollups only. "scale" is the scale most ratings of the period
        were given on; rows on other scales are stated on it (broker.stats.summarize_scales).
        Each row also has "served": the officer's/counter's NEXT calls in the period.
        """
        if group not in GROUPS:
            raise ValueError(f"group must be one of {', '.join(GROUPS)}, got {group!r}")
        date_from, date_to = parse_day(date_from), parse_day(date_to)
        if date_from > date_to:
            raise ValueError(f"date_from {date_from} is after date_to {date_to}")
        columns = _GROUP_COLUMNS[group]
        where, args = ("", ()) if site is None else (" AND site = ?", (site,))
        more, more_args = site_filter(sites)
        where, args = where + more, (*args, *more_args)
        ratings, rating_args = rollups.over_days("rating", f"{columns}, scale, score, flagged, n",
                                                 date_from, date_to, where, args)
        calls, call_args = rollups.over_days("call", f"{columns}, action, n", date_from, date_to, where, args)
        with self._read() as db:
            rating_rows = db.execute(f"SELECT {columns}, scale, score, flagged, sum(n) FROM ({ratings})"
                                     f" GROUP BY {columns}, scale, score, flagged", rating_args).fetchall()
            call_rows = db.execute(f"SELECT {columns}, sum(n) FROM ({calls}) WHERE action = 'next'"
                                   f" GROUP BY {columns}", call_args).fetchall()
            names = names_of(db, group)
        width = 2 if group == "counter" else 1
        scale, rows = _figures(group, rating_rows, call_rows, names, width, satisfied_from)
        return {"scale": scale, "group": group, "from": date_from, "to": date_to, "rows": stats.rank(rows)}

    def low_reasons(self, officer: str | None, date_from: str, date_to: str,
                    sites: Iterable[str] | None = None) -> list[dict]:
        """Reasons citizens gave with the officer's counted ratings (at `sites`, None: any), most frequent first.

        officer None (or "") asks about unattributed ratings.
        """
        date_from, date_to = parse_day(date_from), parse_day(date_to)
        where, args = site_filter(sites)
        rows = self._rows(
            f"SELECT reason, count(*) FROM events WHERE {dialect.null_safe_equal('officer')}"
            " AND day BETWEEN ? AND ? AND reason IS NOT NULL AND type = 'rating' AND flagged = 0 AND held IS NULL"
            f"{where} GROUP BY reason ORDER BY count(*) DESC, reason",
            (officer or None, date_from, date_to, *args))
        return [{"reason": reason, "count": n} for reason, n in rows]

    def events(self, *, device: str | None = None, site: str | None = None, counter: str | None = None,
               officer: str | None = None, type: str | None = None, since_ms: int | None = None,
               until_ms: int | None = None, limit: int = 100, after_id: int | None = None,
               held: bool | None = None, sites: Iterable[str] | None = None) -> list[dict]:
        """Stored events in storage order; pass the last "id" as after_id for the next page.

        since_ms/until_ms bound the service's time (ts), since inclusive, until exclusive.
        Held events are listed too: "held" says why one is not counted (None: counted) and
        "discarded_ms" when an admin discarded it; held=True lists only those, False only counted ones.
        """
        where, args = [], []
        for column, value in (("device", device), ("site", site), ("counter", counter),
                              ("officer", officer), ("type", type)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        for clause, value in (("ts >= ?", since_ms), ("ts < ?", until_ms), ("id > ?", after_id)):
            if value is not None:
                where.append(clause)
                args.append(value)
        if held is not None:
            where.append("held IS NOT NULL" if held else "held IS NULL")
        if sites is not None:
            clause, chosen = site_filter(sites)
            where.append(clause.removeprefix(" AND "))
            args += chosen
        sql = f"SELECT {', '.join(_EVENT_KEYS)}, body FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._rows(sql + " ORDER BY id LIMIT ?", (*args, _count(limit, "limit")))
        return [{**dict(zip(_EVENT_KEYS, row)), "event": json.loads(row[-1])} for row in rows]

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[dict]:
        """Newest first. payload is the kept prefix (broker.store.deadletters): the text when it is UTF-8,
        else base64 (see "encoding"); "size" and "sha256" are the whole payload's, "truncated" says
        whether the prefix is less than all of it."""
        rows = self._rows("SELECT id, received_ms, device, ledger, seq, reason, payload, size, sha256"
                          " FROM dead_letters ORDER BY id DESC LIMIT ? OFFSET ?",
                          (_count(limit, "limit"), _count(offset, "offset")))
        letters = []
        for id_, received_ms, device, ledger, seq, reason, payload, size, sha256 in rows:
            try:
                text, encoding = payload.decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
            letters.append({"id": id_, "received_ms": received_ms, "device": device, "ledger": ledger, "seq": seq,
                            "reason": reason, "payload": text, "encoding": encoding, "size": size,
                            "sha256": sha256, "truncated": len(payload) < size})
        return letters

    def counts(self) -> dict:
        """Running totals (cheap: one tiny table), for /metrics.

        events (stored, held ones included), duplicates (resends of the same body), conflicts
        (resends with another body, dead-lettered), rejected, held (waiting for an admin),
        dead_letters (kept now) and dead_letters_dropped (the oldest, dropped to bound the table).
        """
        return dict(self._rows("SELECT name, n FROM totals"))


def _figures(group: str, rating_rows, call_rows, names: dict, width: int,
             satisfied_from: int | None) -> tuple[int | None, list[dict]]:
    """The report's scale and one row of figures per key, from the summed rollup rows."""
    per_key: dict[tuple, tuple[dict[int, dict[int, int]], list[int]]] = {}
    by_scale: Counter[int] = Counter()
    for row in rating_rows:
        key = row[:width]
        scale, score, flagged, n = row[width:]
        counts, flags = per_key.setdefault(key, ({}, [0]))
        by_scale[scale] += n
        by_score = counts.setdefault(scale, {})  # a scale seen only in flagged ratings still counts
        if flagged:
            flags[0] += n
        else:
            by_score[score] = by_score.get(score, 0) + n
    served = {row[:width]: row[width] for row in call_rows}
    # The most common scale; on a tie the larger, so the result does not depend on row order.
    scale = max(by_scale, key=lambda s: (by_scale[s], s)) if by_scale else None
    rows = []
    for key, (counts, flags) in per_key.items():
        if group == "officer" and key == ("",):
            shown, name = None, UNATTRIBUTED
        else:
            shown, name = "/".join(key), names.get(key) or key[-1]
        figures = stats.summarize_scales(counts, scale, flags[0], satisfied_from)
        rows.append({"key": shown, "name": name, **figures, "served": served.get(key, 0)})
    return scale, rows


def _count(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value

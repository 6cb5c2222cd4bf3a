"""Waiting and service times from tickets: pure functions the dashboard's waiting page and the officer
page use for the figures the store's `waiting_stats` does not group by (the hour of day, the share
rated). Same definitions as the store's `waiting_stats` (broker/store/waiting.py, docs/queue.md):

* wait = first call - taken, for every ticket that was called (served or no-show);
* service = done - first call, for served tickets only (a no-show was never served);
* rated = a served ticket whose counted rating links to it.

A ticket row is a dict with `taken_ts`, `called_ts`, `done_ts` (ms or None), `status`
("waiting", "called", "done", "noshow"), `rated` (bool), and `site`, `counter`, `officer` (who
called it; None while waiting).
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from broker.store.waiting import percentile as store_percentile

__all__ = ["by_hour", "grouped", "percentile", "summarize", "with_waiting"]


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (0-100), interpolated between ranks as the store's `waiting_stats` does."""
    return store_percentile(values, p / 100)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def summarize(tickets: Iterable[dict]) -> dict:
    """Counts and times of these tickets, times in seconds (None when nothing to measure)."""
    n = served = no_show = rated = 0
    waits: list[float] = []
    services: list[float] = []
    for t in tickets:
        n += 1
        if t.get("called_ts") is not None and t.get("taken_ts") is not None:
            waits.append(max(0, t["called_ts"] - t["taken_ts"]) / 1000)
        if t["status"] == "noshow":
            no_show += 1
        elif t["status"] == "done":
            served += 1
            rated += bool(t.get("rated"))
            if t.get("done_ts") is not None and t.get("called_ts") is not None:
                services.append(max(0, t["done_ts"] - t["called_ts"]) / 1000)
    return {"tickets": n, "served": served, "no_show": no_show,
            "wait_mean_s": _round(_mean(waits)), "wait_p50_s": _round(percentile(waits, 50)),
            "wait_p90_s": _round(percentile(waits, 90)), "service_mean_s": _round(_mean(services)),
            "rated": rated, "rated_share": round(rated / served, 4) if served else None}


def by_hour(tickets: Iterable[dict], tz: ZoneInfo) -> list[dict]:
    """`summarize` per hour of day the ticket was taken (site time), only the hours that had tickets."""
    hours: dict[int, list[dict]] = {}
    for t in tickets:
        hour = datetime.fromtimestamp(t["taken_ts"] / 1000, tz).hour
        hours.setdefault(hour, []).append(t)
    return [{"hour": h, **summarize(rows)} for h, rows in sorted(hours.items())]


def grouped(tickets: Iterable[dict], group: str) -> dict[str | None, dict]:
    """`summarize` per officer (its id; None: unattributed), per counter ("site/counter") or per site, the
    keys of the satisfaction rows; a ticket nobody called belongs to no officer or counter, but to its site."""
    if group not in ("officer", "counter", "site"):
        raise ValueError(f"group must be officer, counter or site, got {group!r}")
    rows: dict[str | None, list[dict]] = {}
    for t in tickets:
        if group == "site":
            rows.setdefault(t["site"], []).append(t)
            continue
        if t.get("counter") is None:
            continue
        key = (t.get("officer") or None) if group == "officer" else f"{t['site']}/{t['counter']}"
        rows.setdefault(key, []).append(t)
    return {key: summarize(ts) for key, ts in rows.items()}


def with_waiting(report: dict, tickets: list[dict], group: str, names: dict[str | None, str]) -> dict:
    """The satisfaction report (broker.reports) with its waiting figures: per row, and for the totals.

    An officer or counter that called tickets but has no rating gets a row of its own at the end
    (no ratings, its waiting figures), so the report's tickets add up to the period's.
    """
    by_key = grouped(tickets, group)
    known = {r.get("key") for r in report["rows"]}
    extra = [{"key": key, "name": names.get(key) or key or "", "ratings": 0, "counts": {}, "satisfied": 0,
              "rate": None, "mean": None, "index": None, "wilson_lower": 0.0, "flagged": 0, "served": 0}
             for key in sorted(by_key, key=lambda k: (k is None, k or "")) if key not in known]
    return {**report, "rows": report["rows"] + extra, "waiting": by_key, "waiting_total": summarize(tickets)}

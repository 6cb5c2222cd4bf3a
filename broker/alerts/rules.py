"""The alert rules: pure functions from facts read from the store and an instant to the conditions that hold.

State in, decisions out, like device/counter.py: `evaluate` says which (rule, subject)
conditions hold now, `reconcile` compares them with the alerts already open and says which to
open and which to resolve. Nothing here reads a clock or the store, so every rule is tested
with plain values (tests/test_alerts_rules.py).

Facts (broker.store.alerts_hours.SiteHours.alert_facts): registered devices as the API shows
them, the newest counted ratings (newest first), flagged presses per counter in the last hour,
and names of officers, counters and sites.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from broker.alerts.hours import Hours, open_seconds

__all__ = ["RULES", "Condition", "Thresholds", "evaluate", "reconcile"]

RULES = ("offline", "backlog", "clock", "salvage", "printer", "low_streak", "low_rate", "flagged")
PRINTER_TROUBLE = ("paper_out", "missing")

HoursOf = Callable[[str], tuple[Hours, ZoneInfo]]  # site -> its opening hours and time zone


@dataclass(frozen=True)
class Thresholds:
    offline_after_s: float = 600
    backlog_max: int = 200
    backlog_age_s: float = 3600
    low_streak: int = 5
    low_rate_below: float = 0.5
    low_rate_window: int = 20
    flagged_per_hour: int = 30
    satisfied_from: int = 0  # 0: the top two levels of each scale, as the figures count
    rules: frozenset[str] = field(default_factory=lambda: frozenset(RULES))


@dataclass(frozen=True)
class Condition:
    rule: str
    subject: str  # a device id, an officer id, or "site/counter"
    site: str | None
    details: dict

    @property
    def key(self) -> tuple[str, str]:
        return self.rule, self.subject


def _where(facts: dict, site: str | None, counter: str | None) -> dict:
    return {"site": site, "counter": counter, "site_name": facts.get("sites", {}).get(site, {}).get("name") or site,
            "counter_name": facts.get("counters", {}).get((site, counter)) or counter}


def _device_conditions(facts: dict, now_s: float, hours_of: HoursOf, th: Thresholds) -> Iterable[Condition]:
    for d in facts["devices"]:
        where = {"device": d["device"], **_where(facts, d["site"], d["counter"])}
        site = d["site"]
        if d["online"] is False and d["last_seen_ms"] is not None:
            hours, tz = hours_of(site)
            dark = open_seconds(hours, tz, d["last_seen_ms"] / 1000, now_s)
            if dark >= th.offline_after_s:
                yield Condition("offline", d["device"], site, {**where, "since_ms": d["last_seen_ms"]})
        telemetry = d.get("last_telemetry") or {}
        age = telemetry.get("oldest_unacked_s")
        age = age if isinstance(age, (int, float)) and not isinstance(age, bool) else None
        backlog = d["backlog"] if isinstance(d["backlog"], int) else 0
        if backlog > th.backlog_max or (age is not None and backlog and age > th.backlog_age_s):
            yield Condition("backlog", d["device"], site, {**where, "backlog": backlog, "oldest_unacked_s": age})
        if d["clock_ok"] is False:
            yield Condition("clock", d["device"], site, where)
        salvage = d.get("salvage") or {}
        stuck = [salvage.get(k) for k in ("pending", "unreadable")]
        if any(isinstance(n, int) and n > 0 for n in stuck):
            yield Condition("salvage", d["device"], site, {**where, **salvage})
        printer = telemetry.get("printer")
        if isinstance(printer, str) and printer in PRINTER_TROUBLE:
            yield Condition("printer", d["device"], site, {**where, "printer": printer})


def satisfied(scale: int, score: int, satisfied_from: int = 0) -> bool:
    return score >= (satisfied_from or scale - 1)


def _by_officer(ratings: list[dict]) -> dict[str, list[dict]]:
    """Each officer's ratings, newest first (by the time they were given, not by arrival)."""
    out: dict[str, list[dict]] = {}
    for r in ratings:
        out.setdefault(r["officer"], []).append(r)
    for rows in out.values():
        rows.sort(key=lambda r: r["ts"], reverse=True)
    return out


def _officer_conditions(facts: dict, th: Thresholds) -> Iterable[Condition]:
    names = facts.get("officers", {})
    for officer, rows in _by_officer(facts["ratings"]).items():
        latest = rows[0]
        where = {"officer": officer, "officer_name": names.get(officer) or officer,
                 **_where(facts, latest["site"], latest["counter"])}
        streak = 0
        for r in rows:
            if r["score"] != 1:
                break
            streak += 1
        if streak >= th.low_streak:
            yield Condition("low_streak", officer, latest["site"], {**where, "streak": streak})
        window = rows[:th.low_rate_window]
        if len(window) == th.low_rate_window:
            rate = sum(satisfied(r["scale"], r["score"], th.satisfied_from) for r in window) / len(window)
            if rate < th.low_rate_below:
                yield Condition("low_rate", officer, latest["site"], {**where, "rate": round(rate, 3),
                                                                      "ratings": len(window)})


def _flagged_conditions(facts: dict, th: Thresholds) -> Iterable[Condition]:
    for (site, counter), n in sorted(facts["flagged"].items()):
        if n > th.flagged_per_hour:
            yield Condition("flagged", f"{site}/{counter}", site, {**_where(facts, site, counter), "flagged": n})


def evaluate(facts: dict, now_s: float, hours_of: HoursOf, th: Thresholds) -> list[Condition]:
    """Every condition that holds at `now_s` under the enabled rules."""
    found = [*_device_conditions(facts, now_s, hours_of, th), *_officer_conditions(facts, th),
             *_flagged_conditions(facts, th)]
    return [c for c in found if c.rule in th.rules]


def reconcile(open_keys: Iterable[tuple[str, str]], holding: list[Condition]
              ) -> tuple[list[Condition], list[tuple[str, str]]]:
    """(conditions to open an alert for, open (rule, subject)s to resolve): no repeats while one lasts."""
    open_keys = set(open_keys)
    now = {c.key for c in holding}
    return [c for c in holding if c.key not in open_keys], sorted(open_keys - now)

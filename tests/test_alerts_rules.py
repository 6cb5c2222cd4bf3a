"""The alert rules as pure functions: facts and an instant in, conditions out; then what to open and resolve."""
from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from broker.alerts.hours import Hours
from broker.alerts.rules import Condition, Thresholds, evaluate, reconcile
from broker.alerts.settings import DEFAULT_HOURS

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
HOURS = Hours.from_text(DEFAULT_HOURS, closed=["2026-11-19"])
TH = Thresholds(offline_after_s=600, backlog_max=10, backlog_age_s=600, low_streak=3, low_rate_below=0.5,
                low_rate_window=4, flagged_per_hour=5)


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=HCM).timestamp()


def device(**kw) -> dict:
    return {"device": "dev-1", "site": "s1", "counter": "1", "online": True, "last_seen_ms": None, "backlog": 0,
            "clock_ok": True, "last_telemetry": None, "salvage": None, **kw}


def facts(devices=(), ratings=(), flagged=None) -> dict:
    return {"devices": list(devices), "ratings": list(ratings), "flagged": flagged or {},
            "officers": {"o1": "Nguyễn Văn A"}, "counters": {("s1", "1"): "Quầy 1"}, "sites": {"s1": {"name": "TT"}}}


def rules_at(f: dict, when: str, th: Thresholds = TH) -> list[tuple[str, str]]:
    return [c.key for c in evaluate(f, at(when), lambda site: (HOURS, HCM), th)]


def test_offline_counts_only_opening_hours():
    gone = device(online=False, last_seen_ms=int(at("2026-11-18 10:00:00") * 1000))  # a Wednesday
    f = facts([gone])
    assert rules_at(f, "2026-11-18 10:09:59") == []
    assert rules_at(f, "2026-11-18 10:10:00") == [("offline", "dev-1")]
    # Switched off just before lunch: lunch does not count, the afternoon does.
    lunch = facts([device(online=False, last_seen_ms=int(at("2026-11-18 11:25:00") * 1000))])
    assert rules_at(lunch, "2026-11-18 13:30:00") == []
    assert rules_at(lunch, "2026-11-18 13:35:00") == [("offline", "dev-1")]
    # Off on Wednesday evening, Thursday is a closed date: Friday 07:40 is its first 10 minutes of opening.
    evening = facts([device(online=False, last_seen_ms=int(at("2026-11-18 17:30:00") * 1000))])
    assert rules_at(evening, "2026-11-19 16:00:00") == []
    assert rules_at(evening, "2026-11-20 07:40:00") == [("offline", "dev-1")]
    assert rules_at(facts([device(online=None)]), "2026-11-20 09:00:00") == []  # never said anything


def test_device_health_rules_read_telemetry_defensively():
    f = facts([device(device="a", backlog=11), device(device="b", backlog=3, last_telemetry={"oldest_unacked_s": 700}),
               device(device="c", clock_ok=False), device(device="d", salvage={"salvaged": 4, "pending": 0,
                                                                               "unreadable": 2}),
               device(device="e", last_telemetry={"printer": "paper_out"}),
               device(device="f", last_telemetry={"printer": "ok", "oldest_unacked_s": "soon"}, backlog=2),
               device(device="g", last_telemetry={"printer": ["paper_out"]}, salvage={"salvaged": 3}),
               device(device="h", backlog=0, last_telemetry={"oldest_unacked_s": 9999})])
    assert sorted(rules_at(f, "2026-11-18 10:00:00")) == [("backlog", "a"), ("backlog", "b"), ("clock", "c"),
                                                          ("printer", "e"), ("salvage", "d")]


def rating(score: int, ts: int, officer: str = "o1", scale: int = 5) -> dict:
    return {"officer": officer, "site": "s1", "counter": "1", "scale": scale, "score": score, "ts": ts}


def test_low_streak_names_officer_and_counter_and_ends_with_a_better_rating():
    three = [rating(1, 3), rating(1, 2), rating(1, 1)]
    (c,) = [c for c in evaluate(facts(ratings=three), 0, lambda s: (HOURS, HCM), TH) if c.rule == "low_streak"]
    assert c.subject == "o1" and c.details["officer_name"] == "Nguyễn Văn A" and c.details["counter"] == "1"
    assert c.details["counter_name"] == "Quầy 1" and c.details["streak"] == 3
    assert ("low_streak", "o1") not in rules_at(facts(ratings=[rating(4, 4), *three]), "2026-11-18 10:00:00")
    # Order is the time they were given, whatever order they arrived in.
    assert ("low_streak", "o1") in rules_at(facts(ratings=[rating(4, 0), *three]), "2026-11-18 10:00:00")


def test_low_rate_needs_a_full_window():
    th = Thresholds(low_streak=99, low_rate_below=0.5, low_rate_window=4)
    low = [rating(5, 4), rating(2, 3), rating(2, 2), rating(3, 1)]  # 1 of 4 satisfied (top two of 5)
    assert rules_at(facts(ratings=low), "2026-11-18 10:00:00", th) == [("low_rate", "o1")]
    assert rules_at(facts(ratings=low[:3]), "2026-11-18 10:00:00", th) == []
    fair = [rating(5, 4), rating(4, 3), rating(2, 2), rating(3, 1)]  # 2 of 4: not below one half
    assert rules_at(facts(ratings=fair), "2026-11-18 10:00:00", th) == []


def test_flagged_presses_above_the_limit_and_disabled_rules():
    f = facts(flagged={("s1", "1"): 6, ("s1", "2"): 5})
    assert rules_at(f, "2026-11-18 10:00:00") == [("flagged", "s1/1")]
    assert rules_at(f, "2026-11-18 10:00:00", Thresholds(flagged_per_hour=5, rules=frozenset({"offline"}))) == []


def test_reconcile_opens_once_and_resolves_what_cleared():
    a, b = Condition("offline", "dev-1", "s1", {}), Condition("clock", "dev-2", "s1", {})
    assert reconcile([], [a, b]) == ([a, b], [])
    assert reconcile([a.key], [a, b]) == ([b], [])  # no repeat while it lasts
    assert reconcile([a.key, b.key], [b]) == ([], [a.key])

"""The calendar (common.periods) and the wall clock (common.clock) on fixed dates.

Every date here is fixed, so these tests say the same on any day they run. The site's zone is
Asia/Ho_Chi_Minh (UTC+7, no daylight saving): 2026-12-31T16:59:59Z is 23:59:59 on the 31st
there, and 17:00:00Z is already 1 January.
"""
from __future__ import annotations

import random
import time
from datetime import date, datetime, timedelta, timezone

import pytest

from common import clock
from common.periods import (
    DEFAULT_TZ, local_day, month_key, month_of, month_range, overview_periods, parse_day, split_months, to_date,
    today, week_of, zone,
)

HCM = zone(DEFAULT_TZ)


def utc(text: str) -> float:
    """Seconds since the epoch of an ISO time in UTC ("...Z")."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def ms(text: str) -> int:
    return int(round(utc(text) * 1000))


def fixed(text: str):
    """A clock stopped at an ISO time in UTC."""
    return lambda: utc(text)


# --- zone -----------------------------------------------------------------------------------

def test_zone_is_the_named_iana_zone_and_cached():
    assert str(HCM) == "Asia/Ho_Chi_Minh"
    assert zone(DEFAULT_TZ) is HCM
    assert HCM.utcoffset(datetime(2026, 6, 1)) == timedelta(hours=7)
    assert HCM.utcoffset(datetime(2026, 1, 1)) == timedelta(hours=7)  # no daylight saving


@pytest.mark.parametrize("name", ["Asia/Hanoi_City", "Mars/Olympus_Mons", "", "../etc/passwd", "/etc/localtime",
                                  "UTC+7"])
def test_unknown_zone_is_a_value_error_naming_it(name):
    with pytest.raises(ValueError) as caught:
        zone(name)
    assert str(caught.value) == f"unknown time zone {name!r}"


# --- local_day and today at the day's edges -----------------------------------------------------

@pytest.mark.parametrize("when, day", [
    ("2026-12-31T16:59:59Z", "2026-12-31"),      # 23:59:59 local
    ("2026-12-31T16:59:59.999Z", "2026-12-31"),  # the last millisecond of the local day
    ("2026-12-31T17:00:00Z", "2027-01-01"),      # 00:00:00 local: the new year
    ("2026-11-29T17:00:00Z", "2026-11-30"),      # Monday 00:00 local, still Sunday in UTC
    ("2026-11-30T02:00:00Z", "2026-11-30"),      # Monday 09:00 local
    ("2025-02-28T16:59:59Z", "2025-02-28"),
    ("2025-02-28T17:00:00Z", "2025-03-01"),      # no 29 February in 2025
    ("2024-02-28T17:00:00Z", "2024-02-29"),
    ("2024-02-29T17:00:00Z", "2024-03-01"),
    ("1970-01-01T00:00:00Z", "1970-01-01"),
])
def test_local_day_and_today_switch_at_local_midnight(when, day):
    assert local_day(ms(when), HCM) == day
    assert today(HCM, fixed(when)) == date.fromisoformat(day)


def test_local_day_never_rounds_into_the_next_day():
    last_ms = ms("2026-12-31T16:59:59Z") + 999
    assert local_day(last_ms, HCM) == "2026-12-31"
    assert local_day(last_ms + 1, HCM) == "2027-01-01"


def test_today_depends_on_the_zone():
    at = fixed("2026-12-31T17:00:00Z")
    assert today(HCM, at) == date(2027, 1, 1)
    assert today(zone("UTC"), at) == date(2026, 12, 31)
    assert today(zone("America/New_York"), at) == date(2026, 12, 31)


def test_today_reads_the_shared_clock_by_default(monkeypatch):
    monkeypatch.setattr(clock.time, "time", lambda: utc("2026-12-31T16:59:30Z"))
    monkeypatch.setenv(clock.SHIFT_ENV, "60")  # 23:59:30 local, shifted a minute into the new year
    assert today(HCM) == date(2027, 1, 1)


# --- parse_day / to_date ------------------------------------------------------------------------

def test_parse_day_accepts_only_yyyy_mm_dd():
    assert parse_day("2024-02-29") == "2024-02-29"
    for bad in ("2025-02-29", "2026-13-01", "2026-1-01", "20261201", "2026-12-01T00:00", "", None, 20261201):
        with pytest.raises(ValueError):
            parse_day(bad)


def test_to_date_takes_a_date_or_its_text():
    assert to_date("2026-11-30") == date(2026, 11, 30)
    d = date(2026, 11, 30)
    assert to_date(d) is d
    with pytest.raises(ValueError):
        to_date("30/11/2026")


# --- week_of --------------------------------------------------------------------------------------

@pytest.mark.parametrize("day, monday, sunday", [
    ("2026-11-30", "2026-11-30", "2026-12-06"),  # a Monday starts its own week
    ("2026-12-06", "2026-11-30", "2026-12-06"),  # a Sunday ends it
    ("2026-12-01", "2026-11-30", "2026-12-06"),  # the 1st of a month mid-week
    ("2026-12-31", "2026-12-28", "2027-01-03"),  # a week spanning the new year ...
    ("2027-01-01", "2026-12-28", "2027-01-03"),  # ... is one week from either side
    ("2027-01-03", "2026-12-28", "2027-01-03"),
    ("2027-01-04", "2027-01-04", "2027-01-10"),
    ("2024-02-29", "2024-02-26", "2024-03-03"),
    ("2025-02-28", "2025-02-24", "2025-03-02"),
])
def test_week_of_is_the_iso_week_monday_first(day, monday, sunday):
    assert week_of(day) == (date.fromisoformat(monday), date.fromisoformat(sunday))
    assert week_of(date.fromisoformat(day)) == week_of(day)
    first = week_of(day)[0]
    assert first.weekday() == 0 and first.isocalendar()[:2] == date.fromisoformat(day).isocalendar()[:2]


# --- month_of, month_key, month_range -----------------------------------------------------------------

@pytest.mark.parametrize("day, first, last", [
    ("2026-12-01", "2026-12-01", "2026-12-31"),
    ("2026-12-31", "2026-12-01", "2026-12-31"),
    ("2027-01-01", "2027-01-01", "2027-01-31"),
    ("2025-02-28", "2025-02-01", "2025-02-28"),
    ("2025-02-14", "2025-02-01", "2025-02-28"),
    ("2024-02-29", "2024-02-01", "2024-02-29"),
    ("2028-02-29", "2028-02-01", "2028-02-29"),
    ("2100-02-10", "2100-02-01", "2100-02-28"),  # a century, not a leap year
    ("2000-02-10", "2000-02-01", "2000-02-29"),  # divisible by 400: a leap year
    ("2026-04-30", "2026-04-01", "2026-04-30"),
])
def test_month_of_and_month_key(day, first, last):
    assert month_of(day) == (date.fromisoformat(first), date.fromisoformat(last))
    assert month_key(day) == first[:7]
    assert month_range(first[:7]) == month_of(day)


@pytest.mark.parametrize("month, reason", [
    ("2026-13", "with MM 01-12"),
    ("2026-00", "with MM 01-12"),
    ("0000-05", "with MM 01-12"),
    ("2026-1", "expected a month YYYY-MM, got '2026-1'"),
    ("2026/11", "expected a month YYYY-MM"),
    ("2026-11-01", "expected a month YYYY-MM"),
    (" 2026-11", "expected a month YYYY-MM"),
    ("", "expected a month YYYY-MM"),
    (None, "got None"),
    (202611, "got 202611"),
])
def test_month_range_rejects_what_is_not_a_month(month, reason):
    with pytest.raises(ValueError) as caught:
        month_range(month)
    assert str(caught.value).startswith("month: expected a month YYYY-MM") and reason in str(caught.value)


# --- overview_periods -------------------------------------------------------------------------------

def periods(day: str) -> list[tuple[str, str, str]]:
    return [(name, a.isoformat(), b.isoformat()) for name, a, b in overview_periods(day)]


@pytest.mark.parametrize("day, expected", [
    ("2026-11-30", [("today", "2026-11-30", "2026-11-30"), ("week", "2026-11-30", "2026-11-30"),  # a Monday
                    ("month", "2026-11-01", "2026-11-30")]),
    ("2026-12-01", [("today", "2026-12-01", "2026-12-01"), ("week", "2026-11-30", "2026-12-01"),  # the 1st
                    ("month", "2026-12-01", "2026-12-01")]),
    ("2026-12-31", [("today", "2026-12-31", "2026-12-31"), ("week", "2026-12-28", "2026-12-31"),
                    ("month", "2026-12-01", "2026-12-31")]),
    ("2027-01-01", [("today", "2027-01-01", "2027-01-01"), ("week", "2026-12-28", "2027-01-01"),  # week in 2026
                    ("month", "2027-01-01", "2027-01-01")]),
    ("2028-02-29", [("today", "2028-02-29", "2028-02-29"), ("week", "2028-02-28", "2028-02-29"),
                    ("month", "2028-02-01", "2028-02-29")]),
    ("2025-02-28", [("today", "2025-02-28", "2025-02-28"), ("week", "2025-02-24", "2025-02-28"),
                    ("month", "2025-02-01", "2025-02-28")]),
])
def test_overview_periods_end_today_even_when_they_are_one_day(day, expected):
    assert periods(day) == expected
    assert overview_periods(date.fromisoformat(day)) == overview_periods(day)


def test_overview_of_the_local_day_at_the_new_year():
    """At 23:59:59 local on 31 December the month is December's; one second later it is January's."""
    before = overview_periods(today(HCM, fixed("2026-12-31T16:59:59Z")))
    after = overview_periods(today(HCM, fixed("2026-12-31T17:00:00Z")))
    assert before[2][1:] == (date(2026, 12, 1), date(2026, 12, 31))
    assert after[2][1:] == (date(2027, 1, 1), date(2027, 1, 1))
    assert before[1][1] == after[1][1] == date(2026, 12, 28)  # the same ISO week


# --- split_months -------------------------------------------------------------------------------------

@pytest.mark.parametrize("first, last, pieces", [
    ("2025-02-20", "2025-05-10", [("day", "2025-02-20", "2025-02-28"), ("month", "2025-03", "2025-04"),
                                  ("day", "2025-05-01", "2025-05-10")]),
    ("2026-12-01", "2026-12-31", [("month", "2026-12", "2026-12")]),
    ("2026-12-01", "2026-12-30", [("day", "2026-12-01", "2026-12-30")]),
    ("2026-12-02", "2026-12-31", [("day", "2026-12-02", "2026-12-31")]),
    ("2026-12-31", "2027-01-01", [("day", "2026-12-31", "2027-01-01")]),
    ("2026-12-01", "2027-01-01", [("month", "2026-12", "2026-12"), ("day", "2027-01-01", "2027-01-01")]),
    ("2026-12-31", "2027-01-31", [("day", "2026-12-31", "2026-12-31"), ("month", "2027-01", "2027-01")]),
    ("2024-02-01", "2024-02-29", [("month", "2024-02", "2024-02")]),
    ("2024-02-01", "2024-02-28", [("day", "2024-02-01", "2024-02-28")]),
    ("2025-02-01", "2025-02-28", [("month", "2025-02", "2025-02")]),
    ("2024-01-15", "2025-03-31", [("day", "2024-01-15", "2024-01-31"), ("month", "2024-02", "2025-03")]),
    ("2026-11-30", "2026-11-30", [("day", "2026-11-30", "2026-11-30")]),
    ("2026-11-30", "2026-11-29", []),  # first after last: nothing
])
def test_split_months_examples(first, last, pieces):
    assert split_months(first, last) == pieces
    assert split_months(date.fromisoformat(first), date.fromisoformat(last)) == pieces


def split_by_brute_force(first: date, last: date) -> list[tuple[str, str, str]]:
    """The reference: walk day by day, a month is whole when both its first and last day are inside."""
    pieces: list[tuple[str, str, str]] = []
    day = first
    while day <= last:
        month_first, month_last = date(day.year, day.month, 1), month_of(day)[1]
        if day == month_first and month_last <= last:
            key = day.strftime("%Y-%m")
            if pieces and pieces[-1][0] == "month":
                pieces[-1] = ("month", pieces[-1][1], key)
            else:
                pieces.append(("month", key, key))
            day = month_last + timedelta(days=1)
            continue
        if pieces and pieces[-1][0] == "day" and date.fromisoformat(pieces[-1][2]) == day - timedelta(days=1):
            pieces[-1] = ("day", pieces[-1][1], day.isoformat())
        else:
            pieces.append(("day", day.isoformat(), day.isoformat()))
        day += timedelta(days=1)
    return pieces


def covered_days(pieces: list[tuple[str, str, str]]) -> list[date]:
    days = []
    for kind, a, b in pieces:
        start, end = (month_range(a)[0], month_range(b)[1]) if kind == "month" else (to_date(a), to_date(b))
        days += [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return days


def test_split_months_matches_a_day_by_day_reference_over_random_ranges():
    rng = random.Random(20261130)
    origin = date(2023, 11, 1)
    for _ in range(3000):
        first = origin + timedelta(days=rng.randint(0, 6 * 365))
        last = first + timedelta(days=rng.choice([rng.randint(-2, 40), rng.randint(0, 800)]))
        pieces = split_months(first, last)
        assert pieces == split_by_brute_force(first, last), (first, last)
        # Each day of the range exactly once, in order.
        expected = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        assert covered_days(pieces) == expected, (first, last)


# --- common.clock ----------------------------------------------------------------------------------

@pytest.fixture
def frozen_time(monkeypatch):
    """time.time stopped at 2026-11-30 09:00 local (02:00Z); returns that moment."""
    at = utc("2026-11-30T02:00:00Z")
    monkeypatch.setattr(clock.time, "time", lambda: at)
    monkeypatch.delenv(clock.SHIFT_ENV, raising=False)
    return at


def test_clock_without_a_shift_is_the_system_clock(frozen_time):
    assert clock.shift_s() == 0.0
    assert clock.now() == frozen_time
    assert clock.now_ms() == int(frozen_time * 1000)


@pytest.mark.parametrize("shift", ["86400", "-3600", "0.5", "1e3", " 60 "])
def test_clock_is_shifted_by_the_environment(frozen_time, monkeypatch, shift):
    monkeypatch.setenv(clock.SHIFT_ENV, shift)
    assert clock.shift_s() == float(shift)
    assert clock.now() == frozen_time + float(shift)
    assert clock.now_ms() == int((frozen_time + float(shift)) * 1000)


def test_empty_shift_means_no_shift(frozen_time, monkeypatch):
    monkeypatch.setenv(clock.SHIFT_ENV, "")
    assert clock.now() == frozen_time


@pytest.mark.parametrize("bad", ["tomorrow", "1d", "2027-01-01", "nan-ish"])
def test_malformed_shift_is_an_error_not_zero(frozen_time, monkeypatch, bad):
    monkeypatch.setenv(clock.SHIFT_ENV, bad)
    with pytest.raises(ValueError) as caught:
        clock.now()
    assert clock.SHIFT_ENV in str(caught.value) and repr(bad) in str(caught.value)


def test_shift_moves_the_local_day_across_the_new_year(frozen_time, monkeypatch):
    # From Monday 09:00 local to 31 December 23:59:30 local, then 60 s more.
    target = utc("2026-12-31T16:59:30Z")
    monkeypatch.setenv(clock.SHIFT_ENV, str(target - frozen_time))
    assert today(HCM) == date(2026, 12, 31)
    monkeypatch.setenv(clock.SHIFT_ENV, str(target - frozen_time + 60))
    assert today(HCM) == date(2027, 1, 1)


def test_shift_is_read_at_each_call_and_keeps_time_moving(monkeypatch):
    monkeypatch.setenv(clock.SHIFT_ENV, str(365 * 86400))
    a = clock.now()
    assert abs(a - (time.time() + 365 * 86400)) < 5
    monkeypatch.setenv(clock.SHIFT_ENV, "0")
    assert abs(clock.now() - time.time()) < 5


def test_clock_now_ms_is_milliseconds_of_now(frozen_time, monkeypatch):
    monkeypatch.setenv(clock.SHIFT_ENV, "0.0015")
    assert clock.now_ms() == int((frozen_time + 0.0015) * 1000)
    assert isinstance(clock.now_ms(), int)
    assert datetime.fromtimestamp(clock.now_ms() / 1000, timezone.utc).date() == date(2026, 11, 30)


@pytest.mark.parametrize("first, last", [("0001-01-01", "0001-01-02"), ("0001-01-03", "0001-01-30"),
                                         ("9999-12-02", "9999-12-31"), ("9999-11-01", "9999-12-31")])
def test_split_months_at_the_calendars_ends_reads_days(first, last):
    # A query may name any date; the month next to year 1 or 9999 does not exist: no overflow, days instead.
    assert split_months(first, last) == [("day", first, last)]

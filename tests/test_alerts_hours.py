"""Opening hours: the text and JSON forms, and "is the site open at instant t" in the site's zone."""
from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from broker.alerts.hours import Hours, closing_time, is_open, open_seconds
from broker.alerts.settings import DEFAULT_HOURS

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
HOURS = Hours.from_text(DEFAULT_HOURS, closed=["2027-02-06"])  # Tết 2027 (a Saturday)


def at(text: str, tz=HCM) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


@pytest.mark.parametrize("when, open_", [
    ("2026-11-18 07:29:59", False), ("2026-11-18 07:30:00", True),   # Wednesday: the morning starts
    ("2026-11-18 11:29:59", True), ("2026-11-18 11:30:00", False),   # the end of a range is closed
    ("2026-11-18 12:15:00", False), ("2026-11-18 13:30:00", True),   # lunch, then the afternoon
    ("2026-11-18 17:00:00", False), ("2026-11-21 09:00:00", True),   # Saturday morning
    ("2026-11-21 14:00:00", False), ("2026-11-22 09:00:00", False),  # Saturday afternoon, Sunday
    ("2027-02-06 09:00:00", False),                                  # a closed date
])
def test_is_open_follows_weekdays_ranges_and_closed_dates(when, open_):
    assert is_open(HOURS, HCM, at(when)) is open_


def test_is_open_is_in_the_sites_zone_not_the_callers():
    # 09:00 in Hanoi is 02:00 UTC: open there, and the same instant is 11:00 in Tokyo: open too;
    # 12:00 in Hanoi (lunch) is 14:00 in Tokyo, which is open in Tokyo's own afternoon.
    t = at("2026-11-18 12:00:00")
    assert not is_open(HOURS, HCM, t)
    assert is_open(HOURS, ZoneInfo("Asia/Tokyo"), t)


def test_open_seconds_counts_only_opening_hours():
    # Friday 17:00 to Monday 07:40: Saturday's morning (4 h) and Monday's first 10 minutes.
    assert open_seconds(HOURS, HCM, at("2026-11-20 17:00:00"), at("2026-11-23 07:40:00")) == 4 * 3600 + 600
    assert open_seconds(HOURS, HCM, at("2026-11-18 11:25:00"), at("2026-11-18 13:00:00")) == 300
    assert open_seconds(HOURS, HCM, at("2027-02-06 07:00:00"), at("2027-02-06 12:00:00")) == 0  # closed day
    assert open_seconds(HOURS, HCM, 10.0, 5.0) == 0


def test_text_and_json_round_trip_and_closing_time():
    assert HOURS.to_text() == "mon,tue,wed,thu,fri 07:30-11:30,13:30-17:00; sat 07:30-11:30"
    assert Hours.from_text(HOURS.to_text(), closed=["2027-02-06"]) == HOURS
    assert Hours.from_json(HOURS.to_json()) == HOURS
    assert HOURS.to_json()["closed"] == ["2027-02-06"]
    assert closing_time(HOURS, HCM, date(2026, 11, 18)) == at("2026-11-18 17:00:00")
    assert closing_time(HOURS, HCM, date(2026, 11, 22)) is None


@pytest.mark.parametrize("text", ["mon 9-10", "mon 10:00-09:00", "mon 07:00-09:00,08:00-10:00", "xyz 07:00-08:00",
                                  "mon 07:00-08:00; mon 09:00-10:00", "fri-mon 07:00-08:00", "mon 07:60-08:00",
                                  "mon 24:30-25:00", "mon"])
def test_malformed_hours_are_refused_with_a_reason(text):
    with pytest.raises(ValueError):
        Hours.from_text(text)


def test_bad_json_is_refused():
    for bad in ({"weekly": {"monday": ["07:00-08:00"]}}, {"closed": "2027-02-06"}, {"closed": ["2027-02-30"]},
                {"weekly": []}):
        with pytest.raises(ValueError):
            Hours.from_json(bad)

"""Time is an input: the counter's stamps, the auth store and the test suite's shifted clock.

Product code reads the wall clock through an injectable clock defaulting to common.clock.now, so
HAILONG_CLOCK_SHIFT_S moves all of it at once, in this process and in every child process.
"""
from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime

import pytest

from broker.auth import Auth
from common import clock
from device.clock import SystemClock
from tests.conftest import parse_now
from tests.support import ROOT

NEW_YEAR_S = datetime.fromisoformat("2027-01-01T00:00:00+07:00").timestamp()


def test_counter_stamps_events_with_its_wall_clock():
    c = SystemClock("always", wall=lambda: NEW_YEAR_S + 0.0015)
    assert c.wall_ms() == int(NEW_YEAR_S * 1000) + 1
    stamp = c.stamp()
    assert stamp["ts"] == int(NEW_YEAR_S * 1000) + 1 and stamp["clock_ok"] is True
    assert list(stamp) == ["ts", "clock_ok", "boot", "mono"]


def test_counter_wall_clock_defaults_to_the_shared_one(monkeypatch):
    monkeypatch.setattr(clock.time, "time", lambda: NEW_YEAR_S)
    monkeypatch.setenv(clock.SHIFT_ENV, "-1")
    assert SystemClock("never").wall_ms() == int(NEW_YEAR_S * 1000) - 1000
    # Timers stay on the monotonic clock, which no shift moves.
    assert abs(SystemClock.monotonic() - time.monotonic()) < 1


def test_auth_reads_the_shared_clock_by_default(tmp_path, monkeypatch):
    from argon2 import PasswordHasher

    monkeypatch.setattr(clock.time, "time", lambda: NEW_YEAR_S)
    monkeypatch.setenv(clock.SHIFT_ENV, "3600")
    with Auth(tmp_path / "auth.db", hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)) as auth:
        auth.add_user("lan", "viewer", "a-long-password")
        [user] = auth.list_users()
    assert user["created_ms"] == int((NEW_YEAR_S + 3600) * 1000)


@pytest.mark.parametrize("text, expected", [
    ("2026-11-30", "2026-11-30T09:00:00+07:00"),  # a bare date: 09:00 at the site
    ("2027-01-01T00:00:30+07:00", "2027-01-01T00:00:30+07:00"),
    ("2026-12-31T16:59:30Z", "2026-12-31T23:59:30+07:00"),
    (" 2028-02-29 ", "2028-02-29T09:00:00+07:00"),
])
def test_hailong_now_is_a_time_with_offset_or_a_date(text, expected):
    assert parse_now(text).timestamp() == datetime.fromisoformat(expected).timestamp()


@pytest.mark.parametrize("text", ["2027-01-01T00:00:30", "tomorrow", "2027-02-30", "31/12/2026"])
def test_hailong_now_without_an_offset_or_unreadable_is_refused(text):
    with pytest.raises(pytest.UsageError) as caught:
        parse_now(text)
    assert "HAILONG_NOW" in str(caught.value) and repr(text.strip()) in str(caught.value)


def test_processes_the_suite_starts_share_its_clock():
    """Whatever HAILONG_NOW the suite runs at, a child process reads the same shifted clock."""
    child = subprocess.run([sys.executable, "-c", "from common import clock; print(clock.now())"],
                           capture_output=True, text=True, cwd=ROOT, timeout=30, check=True)
    assert abs(float(child.stdout) - clock.now()) < 10

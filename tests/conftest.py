from __future__ import annotations

import os
import time
from datetime import date, datetime, time as clock_time

import pytest

from common import clock
from common.periods import DEFAULT_TZ, zone
from tests.mosquitto import Mosquitto
from tests.postgres import PostgresCluster, find_bin_dir

# `HAILONG_NOW=2027-01-01T00:00:30+07:00 pytest` (or `make test NOW=...`) runs the suite as if
# it were then; see README, "Running the suite at another date".
NOW_ENV = "HAILONG_NOW"
DAY_STARTS = clock_time(9, 0)  # a bare date means opening time at the site


def parse_now(text: str) -> datetime:
    """HAILONG_NOW as an aware datetime: an ISO time with its offset, or a date at 09:00 site time."""
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), DAY_STARTS, zone(DEFAULT_TZ))
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise pytest.UsageError(f"{NOW_ENV} must be an ISO 8601 time with its offset "
                                f"(e.g. 2027-01-01T00:00:00+07:00) or a date (YYYY-MM-DD), got {text!r}")
    return when


def pytest_configure(config):
    # In os.environ, once, before any test runs: every process the suite starts (the demo,
    # `hailong device run`, the service) inherits the same shift and agrees on "now".
    # HAILONG_NOW itself is dropped, so a process started later keeps moving on from the shifted
    # time instead of starting again at HAILONG_NOW.
    wanted = os.environ.pop(NOW_ENV, "").strip()
    if wanted:
        os.environ[clock.SHIFT_ENV] = repr(parse_now(wanted).timestamp() - time.time())
    try:
        clock.shift_s()
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None


def shifted_clock_line(when: str) -> str | None:
    shift = clock.shift_s()
    if not shift:
        return None
    at = datetime.fromtimestamp(clock.now(), zone(DEFAULT_TZ))
    return f"hailong clock: {at:%A %Y-%m-%d %H:%M:%S%z} ({DEFAULT_TZ}) {when}, {clock.SHIFT_ENV}={shift:.0f}"


def pytest_report_header(config):
    return shifted_clock_line("at session start")


def pytest_terminal_summary(terminalreporter):
    # Also under -q, which hides the header: a failure read later must say which date it ran at.
    line = shifted_clock_line("at session end")
    if line:
        terminalreporter.write_line(line)


@pytest.fixture
def mosquitto(tmp_path):
    """A real mosquitto on a free loopback port; `.stop()`, `.start()`, `.restart()` mid-test."""
    broker = Mosquitto(tmp_path / "mosquitto").start()
    try:
        yield broker
    finally:
        broker.stop()


# ----- PostgreSQL ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_cluster():
    """One throw-away PostgreSQL cluster for the whole session, started when a test first asks (tests/postgres.py)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL not installed (no /usr/lib/postgresql/*/bin/initdb): `make test` as root installs "
                    "Debian's postgresql package; else apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg not installed: pip install -e '.[test]'")
    cluster = PostgresCluster(bin_dir).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(postgres_cluster):
    """The URL of a fresh database holding the store's (and auth's) schema, dropped after the test."""
    url = postgres_cluster.create_database()
    yield url
    postgres_cluster.drop_database(url)


@pytest.fixture
def pg_store_url(postgres_cluster):
    """Like pg_url, for tests that only use the store: a database emptied after an earlier test (faster)."""
    url = postgres_cluster.reusable_database()
    yield url
    postgres_cluster.recycle(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """Where a store test opens its store: a SQLite file, then an empty PostgreSQL database."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_store_url")
    return str(tmp_path / "central" / "hailong.db")

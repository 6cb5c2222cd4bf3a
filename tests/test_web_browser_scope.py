"""One service for a province, in real headless Chromium: a commune's manager sees only its centre on
every page, in every report and in the live feed (where late ratings go where their time puts
them); a province user sees the centres ranked exactly as the API's group=site figures, waiting times
included."""
from __future__ import annotations

import csv
import io

import pytest

from tests.browser import browser, chromium_path
from tests.test_broker_api import counters, rating  # noqa: F401  (fixture)
from tests.test_web_dashboard import PASSWORD, dash, dash_clock, local_ms  # noqa: F401  (fixtures)
from tests.test_web_scope import THEIRS, WAITS, seed_two

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium missing: `make test` installs it")

NAV = ("#nav-overview", "#nav-officers", "#nav-devices", "#nav-misuse", "#nav-reports")


@pytest.fixture
def page(dash):  # noqa: F811
    with browser() as b:
        context = b.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
        p = context.new_page()
        p.set_default_timeout(15_000)
        yield p
        context.close()


def login(page, base: str, user: str) -> None:
    page.goto(base + "/login")
    page.fill("#login-user", user)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(base + "/")


def shown(page) -> list[str]:
    text = page.inner_text("body") + page.title()
    return [word for word in THEIRS if word in text]


def feed_times(page) -> list[int]:
    return [int(t) for t in page.eval_on_selector_all("#live-feed li[data-seq]", "els => els.map(e => e.dataset.ts)")]


def test_a_commune_manager_sees_only_its_centre_everywhere(dash, counters, page):  # noqa: F811
    one, two = seed_two(dash, counters)
    base = dash.server.url
    login(page, base, "commune")
    page.wait_for_selector("#live-status.on")
    for nav in NAV:
        page.click(nav)
        page.wait_for_load_state()
        assert not shown(page), f"{page.url} shows {shown(page)}"
        assert page.title().endswith("· Phường Một"), page.url
    page.click("#nav-officers")
    page.click('#officer-table tr[data-officer="o-q1"] a')
    page.wait_for_url("**/officers/o-q1**")
    assert not shown(page)
    for report in ("officer-csv", "counter-csv"):
        page.click("#nav-reports")
        with page.expect_download() as download:
            page.click(f'[data-report="{report}"]')
        text = open(download.value.path(), encoding="utf-8-sig").read()
        assert text and not [w for w in THEIRS if w in text], report
        assert list(csv.reader(io.StringIO(text)))

    page.click("#nav-overview")
    page.wait_for_selector("#live-status.on")
    before = feed_times(page)
    now = local_ms(dash.now())
    two.send(rating(two, 4, "o-q2", ts=now))  # another centre's: never shown here
    # A late one from this centre's backlog (older than everything shown), then the newest.
    one.send(rating(one, 3, "o-q1", ts=min(before) - 60_000), rating(one, 2, "o-q1", ts=now + 1))
    page.wait_for_function(f"document.querySelectorAll('#live-feed li[data-seq]').length >= {len(before) + 2}")
    times = feed_times(page)
    assert times == sorted(before + [min(before) - 60_000, now + 1], reverse=True)
    assert not shown(page)
    assert page.eval_on_selector_all("#live-feed li", "els => els.map(e => e.dataset.counter)") == ["q1/1"] * len(times)


def test_a_province_user_sees_the_centres_ranked_as_the_api_figures_them(dash, counters, page):  # noqa: F811
    seed_two(dash, counters)
    base = dash.server.url
    login(page, base, "province")
    page.click("#nav-province")
    page.wait_for_selector("#site-table")
    table = page.query_selector("#site-table")
    first, last = table.get_attribute("data-from"), table.get_attribute("data-to")
    api = page.request.get(base + f"/api/v1/satisfaction?group=site&from={first}&to={last}").json()
    rows = page.eval_on_selector_all("#site-table tbody tr[data-rank]:not(.quiet)",
                                     "els => els.map(e => ({...e.dataset}))")
    assert [r["site"] for r in rows] == [r["key"] for r in api["rows"]] == ["q1", "q2"]
    for row, want in zip(rows, api["rows"]):
        assert int(row["ratings"]) == want["ratings"] and float(row["rate"]) == pytest.approx(want["rate"])
        assert float(row["index"]) == pytest.approx(want["index"])
        assert float(row["wilson"]) == pytest.approx(want["wilson_lower"]) and int(row["flagged"]) == want["flagged"]
    # Each centre's queue figures, as GET /api/v1/waiting?group=site serves them.
    waits = page.request.get(base + f"/api/v1/waiting?group=site&from={first}&to={last}").json()["rows"]
    assert [w["key"] for w in waits] == ["q1", "q2"]
    for row, want in zip(rows, waits):
        assert (int(row["tickets"]), int(row["noShow"]), float(row["waitMean"]), float(row["waitP90"])) \
            == (want["tickets"], want["no_show"], want["wait_mean_s"], want["wait_p90_s"]) == WAITS[row["site"]]
    cells = page.eval_on_selector_all('#site-table tr[data-site="q1"] td', "els => els.map(e => e.innerText)")
    assert cells[8:12] == ["4", "6,0 phút", "8,4 phút", "25,0 %"]  # tickets, mean, 90 %, no-show share
    # The picker narrows every page to one centre, and the title says which.
    page.select_option("#site-select", "q2")
    page.click("#site-go")
    page.wait_for_selector("#site-table")
    page.click("#nav-overview")
    page.wait_for_url("**/?site=q2")
    assert page.title().endswith("· Phường Hai")
    assert "Lan Một" not in page.inner_text("#live-feed") and "Bình Hai" in page.inner_text("#live-feed")

"""The dashboard in real headless Chromium, fed by the real counter firmware over a real Mosquitto."""
from __future__ import annotations

import openpyxl
import pytest

from common.clock import now
from tests.browser import browser, chromium_path
from tests.support import DeviceProcess, write_config
from tests.test_web_dashboard import PASSWORD, dash  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium missing: `make test` installs it")


@pytest.fixture
def dash_clock():
    """The wall clock: the counter firmware stamps its events with the time it really is."""
    return now


@pytest.fixture
def page(dash):  # noqa: F811
    with browser() as b:
        context = b.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
        p = context.new_page()
        p.set_default_timeout(15_000)
        yield p
        context.close()


def this_month(dash) -> tuple[str, str]:  # noqa: F811
    """The month the dashboard takes for this one."""
    from calendar import monthrange

    at = dash.now()
    return f"{at:%Y-%m}-01", f"{at:%Y-%m}-{monthrange(at.year, at.month)[1]:02d}"


def login(page, base: str, user: str = "manager") -> None:
    page.goto(base + "/")
    assert "/login" in page.url  # no session: the login page, not the dashboard
    page.fill("#login-user", user)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(base + "/")


def test_manager_follows_live_ratings_opens_an_officer_and_downloads_the_report(dash, page, tmp_path, mosquitto):  # noqa: F811
    base = dash.server.url
    dash.store.upsert_officer("o-7", "Nguyễn Thị Lan", code="07")
    dash.store.assign("kien-thuy", "1", "o-7", int(dash.clock() * 1000) - 60_000)
    login(page, base)
    page.wait_for_selector("#live-status.on")  # the live feed is connected before anything happens

    dev = DeviceProcess(write_config(tmp_path, mosquitto, counter="1", extra="[rating]\nrepeat_gap_s = 0\n"))
    try:
        dev.wait_ready()
        dev.wait("online", lambda v: v[-1] is True)
        dev.send("press 4", "press 3", "press 4", "press 1")
        dev.wait("acked", lambda v: sum(map(len, v)) >= 4, timeout=30)
    finally:
        dev.close()

    # The feed updates without a reload.
    page.wait_for_function("document.querySelectorAll('#live-feed li[data-seq]').length >= 4")
    scores = page.eval_on_selector_all("#live-feed li[data-seq]", "els => els.map(e => e.dataset.score)")
    assert sorted(scores[:4]) == ["1", "3", "4", "4"]

    page.click("#nav-officers")
    row = page.wait_for_selector('#officer-table tr[data-officer="o-7"]')
    assert row.get_attribute("data-ratings") == "4"
    first, last = this_month(dash)
    api = page.request.get(base + f"/api/v1/satisfaction?group=officer&from={first}&to={last}")
    assert api.ok
    expected = next(r for r in api.json()["rows"] if r["key"] == "o-7")
    assert float(row.get_attribute("data-rate")) == pytest.approx(expected["rate"])

    row.query_selector("a").click()
    page.wait_for_url("**/officers/o-7**")
    assert "Nguyễn Thị Lan" in page.inner_text("h1, h2")

    page.click("#nav-reports")
    with page.expect_download() as info:
        page.click('a[data-report="officer-xlsx"]')
    path = tmp_path / "report.xlsx"
    info.value.save_as(path)
    sheet = openpyxl.load_workbook(path).active
    api = page.request.get(base + f"/api/v1/satisfaction?group=officer&from={first}&to={last}").json()
    expected = next(r for r in api["rows"] if r["key"] == "o-7")
    found = [row for row in sheet.iter_rows(values_only=True) if row and "Nguyễn Thị Lan" in row]
    assert found, "the officer is not in the XLSX"
    numbers = [v for v in found[0] if isinstance(v, (int, float))]
    assert expected["ratings"] in numbers and expected["satisfied"] in numbers
    assert any(abs(v - expected["rate"]) < 1e-9 for v in numbers if isinstance(v, float))


def test_language_switch_and_logout(dash, page):  # noqa: F811
    base = dash.server.url
    login(page, base, "viewer")
    assert page.inner_text("#nav-officers") == "Cán bộ"
    page.click("#lang-en")
    page.wait_for_function("document.querySelector('#nav-officers').innerText === 'Officers'")
    page.click("#lang-vi")
    page.wait_for_function("document.querySelector('#nav-officers').innerText === 'Cán bộ'")
    page.click("#logout button, #logout [type=submit]")
    page.wait_for_url("**/login**")
    page.goto(base + "/officers")
    assert "/login" in page.url
    assert page.request.get(base + "/api/v1/satisfaction?group=site&from=2026-01-01&to=2026-01-31").status == 401

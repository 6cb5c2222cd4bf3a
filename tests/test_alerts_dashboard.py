"""The alerts on the dashboard: the open count on every page, the alerts page, acknowledging by name,
and each site's opening hours edited there; in real headless Chromium too."""
from __future__ import annotations

import pytest

from broker.alerts.messages import TITLES
from broker.alerts.rules import RULES
from broker.i18n import CATALOGUE, LANGS
from tests.browser import browser, chromium_path
from tests.test_broker_api import counters, now_ms  # noqa: F401  (fixture)
from tests.test_web_dashboard import PASSWORD, attrs, csrf_of, dash, dash_clock  # noqa: F401  (fixtures)


def open_two(dash) -> list[dict]:
    dash.store.upsert_site("s1", "Trung tâm 1")
    new, _ = dash.store.apply_alerts(
        [("offline", "dev-1", "s1", {"device": "dev-1", "site": "s1", "counter": "1", "site_name": "Trung tâm 1",
                                     "counter_name": "Quầy 1"}),
         ("low_streak", "o1", "s1", {"officer": "o1", "officer_name": "Nguyễn Văn An", "site": "s1", "counter": "1",
                                     "site_name": "Trung tâm 1", "counter_name": "Quầy 1", "streak": 5})],
        [], lambda a, k: [], now_ms())
    return new


def badge(html: str) -> str:
    (b,) = attrs(html, r'<span class="badge[^"]*" id="alerts-badge"[^>]*>')
    return b["open"]


def test_the_open_count_is_on_every_page_and_the_alerts_page_lists_them(dash):
    viewer = dash.login("viewer")
    assert badge(viewer.get("/").text) == "0"
    open_two(dash)
    for path in ("/", "/officers", "/devices", "/misuse", "/reports", "/alerts"):
        assert badge(viewer.get(path).text) == "2", path
    html = viewer.get("/alerts").text
    rows = attrs(html, r'<tr data-alert="[^>]*>')
    assert {(r["rule"], r["subject"]) for r in rows} == {("offline", "dev-1"), ("low_streak", "o1")}
    assert "Nguyễn Văn An (o1)" in html and "5 lượt «Không hài lòng» liên tiếp" in html
    assert 'class="ack"' not in html  # a viewer sees, a manager acknowledges


def test_a_manager_acknowledges_by_name_and_sets_a_sites_hours(dash):
    (offline, _) = open_two(dash)
    manager = dash.login("manager")
    html = manager.get("/alerts").text
    r = manager.post(f"/alerts/{offline['id']}/ack", data={"csrf": csrf_of(html)})
    assert r.status_code == 303 and r.headers["location"] == "/alerts?msg=acked"
    acked = dash.store.alert(offline["id"])
    assert (acked["acked_by"], acked["acked_ms"]) == ("manager", now_ms())
    assert manager.post(f"/alerts/{offline['id']}/ack", data={"csrf": "forged"}).status_code == 403
    form = {"csrf": csrf_of(html), "site": "s1", "weekly": "mon-fri 08:00-12:00; sat 08:00-11:00",
            "closed": "2027-02-06, 2027-02-07", "email_to": "a@example.vn; b@example.vn"}
    assert manager.post("/alerts/hours", data=form).headers["location"] == "/alerts?msg=hours_saved#hours"
    saved = dash.store.site_hours("s1")
    assert saved["hours"]["closed"] == ["2027-02-06", "2027-02-07"] and saved["updated_by"] == "manager"
    assert saved["email_to"] == ["a@example.vn", "b@example.vn"] and saved["hours"]["weekly"]["sat"] == ["08:00-11:00"]
    for bad in ({"weekly": "mon 8-12"}, {"closed": "06/02/2027"}, {"email_to": "nobody"}, {"email_to": "a\r@b.vn"},
                {"site": "nowhere"}):
        r = manager.post("/alerts/hours", data={**form, **bad})
        assert r.headers["location"] == "/alerts?msg=bad_hours#hours", bad
    assert dash.store.site_hours("s1") == saved  # nothing changed by a refused form


def test_every_alert_text_exists_in_both_languages():
    assert set(TITLES) == set(RULES) and all(set(t) == set(LANGS) for t in TITLES.values())
    for m in ("acked", "hours_saved", "bad_hours"):
        assert f"alerts.msg.{m}" in CATALOGUE


@pytest.mark.skipif(chromium_path() is None, reason="chromium missing: `make test` installs it")
def test_in_chromium_a_manager_sees_the_badge_and_acknowledges(dash):
    open_two(dash)
    with browser() as b:
        page = b.new_context(viewport={"width": 1366, "height": 768}).new_page()
        page.set_default_timeout(15_000)
        page.goto(dash.server.url + "/login")
        page.fill('input[name="user"]', "manager")
        page.fill('input[name="password"]', PASSWORD)
        page.click('button[type="submit"]')
        page.wait_for_url(dash.server.url + "/")
        assert page.text_content("#alerts-badge") == "2"
        page.click("#nav-alerts")
        page.wait_for_url("**/alerts")
        page.click('form.ack button >> nth=0')
        page.wait_for_url("**/alerts?msg=acked")
        assert page.get_attribute("#flash", "data-msg") == "acked"
        acked = [r.get_attribute("data-acked") for r in page.query_selector_all("#alerts-open tr[data-alert]")]
        assert sorted(acked) == ["", "manager"]

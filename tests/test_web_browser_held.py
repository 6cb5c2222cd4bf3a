"""Held events in real headless Chromium: an admin approves one device and discards another.

The service's clock is pinned (tests.test_web_dashboard's `dash_clock`) and the counters are test
MQTT clients stamping their events at that moment, so "today" never straddles a midnight.
"""
from __future__ import annotations

import pytest

from tests.browser import browser, chromium_path
from tests.test_broker_api import counters, now_ms, rating  # noqa: F401  (fixture)
from tests.test_web_dashboard import PASSWORD, dash, dash_clock  # noqa: F401  (fixtures)
from tests.test_web_dashboard import seed

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium missing: `make test` installs it")


@pytest.fixture
def page(dash):  # noqa: F811
    with browser() as b:
        context = b.new_context(viewport={"width": 1366, "height": 768})
        p = context.new_page()
        p.set_default_timeout(15_000)
        yield p
        context.close()


def today_ratings(page, base: str) -> str:
    page.goto(base + "/")
    return page.get_attribute("#fig-today", "data-ratings")


def decide(page, action: str, device: str, answer: str = "accept") -> None:
    """Press Approve or Discard on the device's held row and answer the browser's confirmation."""
    page.once("dialog", lambda dialog: getattr(dialog, answer)())
    page.click(f'form.decide[data-action="{action}"][data-device="{device}"] button')


def test_admin_approves_a_held_device_and_the_figures_change_while_a_discard_never_counts(dash, page, counters):  # noqa: F811
    seed(dash, counters)  # 6 ratings counted today: o1 4, o2 2
    dash.store.assign("s1", "1", "o1", now_ms() - 3_600_000)
    pi = counters("pi-new")  # the counter's new Pi, not registered yet: held
    pi.send(rating(pi, 4, None), rating(pi, 3, None))
    evil = counters("evil-1", counter="2")  # a client nobody provisioned, naming a real counter
    evil.send(rating(evil, 1, "invented"), rating(evil, 1, None))
    base = dash.server.url

    page.goto(base + "/")
    page.fill("#login-user", "admin")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(base + "/")
    assert today_ratings(page, base) == "6"

    page.click("#nav-devices")
    page.wait_for_selector('#held-table tr[data-held="pi-new"]')
    assert page.get_attribute('#held-table tr[data-held="evil-1"]', "data-ratings") == "2"
    decide(page, "discard", "evil-1")
    page.wait_for_selector('#flash[data-msg="discarded"]')
    assert page.query_selector('#held-table tr[data-held="evil-1"]') is None
    assert today_ratings(page, base) == "6"  # discarded: never counted

    page.click("#nav-devices")
    decide(page, "approve", "pi-new", answer="dismiss")  # changed their mind: nothing is sent
    assert [h["device"] for h in dash.store.held_devices()] == ["pi-new"]
    decide(page, "approve", "pi-new")
    page.wait_for_selector('#flash[data-msg="approved"]')
    assert "pi-new" in page.inner_text("#flash") and page.query_selector("#held-none") is not None
    assert page.get_attribute('#device-table tr[data-device="pi-new"]', "data-registered") == "true"
    assert page.get_attribute('#device-table tr[data-device="dev-1"]', "data-registered") == "false"

    assert today_ratings(page, base) == "8"
    page.click("#nav-officers")
    assert page.get_attribute('#officer-table tr[data-officer="o1"]', "data-ratings") == "6"
    assert page.query_selector('#officer-table tr[data-officer="invented"]') is None

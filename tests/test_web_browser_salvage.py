"""Votes rescued from a quarantined ledger, as fleet health shows them: the devices API and the
dashboard's devices page in real headless Chromium, fed by telemetry over a real Mosquitto."""
from __future__ import annotations

import pytest

from common.clock import now_ms
from protocol.codec import encode
from protocol.messages import make_telemetry
from tests.browser import browser, chromium_path
from tests.test_broker_api import Counter
from tests.test_device_salvage import poll
from tests.test_web_dashboard import PASSWORD, dash, dash_clock  # noqa: F401  (fixtures)

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium missing: `make test` installs it")


def telemetry(counter: Counter, **salvage) -> None:
    t = make_telemetry(uptime_s=60.0, backlog=0, clock_ok=True, fw="1.0", disk_free_mb=900.0, cpu_temp_c=None,
                       ts=now_ms(), ledger="0123456789abcdef", **salvage)
    counter.client.publish(f"hailong/v1/{counter.device}/telemetry", encode(t), qos=1).wait_for_publish(5)


def test_devices_page_and_api_show_each_devices_salvage_figures(dash, mosquitto):  # noqa: F811
    for device, counter in (("dev-1", "1"), ("dev-2", "2"), ("dev-3", "3")):
        dash.store.register_device(device, "s1", counter)
    rescued, lost, plain = (Counter(mosquitto, d, subscribe=False) for d in ("dev-1", "dev-2", "dev-3"))
    try:
        telemetry(rescued, salvaged=57, salvage_pending=4, salvage_unreadable=0)
        telemetry(lost, salvaged=12, salvage_pending=0, salvage_unreadable=3)
        telemetry(plain)  # never quarantined a ledger: no salvage figures at all
        poll(lambda: all((dash.store.device(d) or {}).get("last_telemetry") for d in ("dev-1", "dev-2", "dev-3")),
                 "the three telemetry samples stored")
    finally:
        for c in (rescued, lost, plain):
            c.close()
    base = dash.server.url
    with browser() as b:
        page = b.new_context(viewport={"width": 1366, "height": 768}).new_page()
        page.set_default_timeout(15_000)
        page.goto(base + "/login")
        page.fill("#login-user", "viewer")
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        page.wait_for_url(base + "/")
        page.click("#nav-devices")
        row = {d: page.wait_for_selector(f'#device-table tr[data-device="{d}"]') for d in ("dev-1", "dev-2", "dev-3")}
        figures = {d: [r.get_attribute(a) for a in ("data-salvaged", "data-salvage-pending", "data-salvage-unreadable")]
                   for d, r in row.items()}
        assert figures == {"dev-1": ["57", "4", "0"], "dev-2": ["12", "0", "3"], "dev-3": ["", "", ""]}
        cells = {d: r.query_selector("td.salvage").inner_text() for d, r in row.items()}
        assert "57" in cells["dev-1"] and "4" in cells["dev-1"] and cells["dev-3"] == "—"
        # Unreadable rows are votes lost to the card: the one case someone must act on.
        assert row["dev-2"].query_selector(".badge.unreadable") is not None
        assert row["dev-1"].query_selector(".badge.unreadable") is None
        api = page.request.get(base + "/api/v1/devices")
        assert api.ok
        salvage = {d["device"]: d["salvage"] for d in api.json()["items"]}
        assert salvage == {"dev-1": {"salvaged": 57, "pending": 4, "unreadable": 0},
                           "dev-2": {"salvaged": 12, "pending": 0, "unreadable": 3}, "dev-3": None}

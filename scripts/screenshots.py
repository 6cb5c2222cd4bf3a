"""Screenshots of the dashboard for docs/ and the README, made with the same headless Chromium as the tests.

Stands up the real service (embedded broker, store, API, dashboard) on a temporary store filled
with a month of sample data at two centres, logs in as the first centre's manager (limited to it)
and saves the overview and an officer page at 1366x768 (an office screen) plus the overview at
phone width, then as a province user and saves the centres' ranking. Run: `python scripts/screenshots.py`;
`HAILONG_CLOCK_SHIFT_S` (common.clock) moves "now", e.g. to a weekday afternoon mid-month.
"""
from __future__ import annotations

import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.config import config_from_dict  # noqa: E402
from broker.embedded import EmbeddedBroker  # noqa: E402
from broker.service import Service  # noqa: E402
from common import clock  # noqa: E402
from hailong.sample_data import OFFICERS, seed_month  # noqa: E402
from provisioning.mosquitto_files import write_local_site  # noqa: E402
from tests.browser import browser  # noqa: E402
from tests.mosquitto import free_port  # noqa: E402

OUT = ROOT / "docs"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="hailong-shots-"))
    mqtt_port, http_port = free_port(), free_port()
    passwd, acl = write_local_site(work / "mosquitto", {"hailong-service": "screenshots-only"})
    cfg = config_from_dict({
        "service": {"data_dir": str(work / "state"), "name": "Bộ phận Một cửa huyện Kiến Thụy"},
        "mqtt": {"embedded": True, "port": mqtt_port, "password": "screenshots-only",
                 "passwd_file": str(passwd), "acl_file": str(acl)},
        "store": {"url": f"sqlite:///{work / 'hailong.db'}"},
        "http": {"port": http_port},
    })
    now = datetime.fromtimestamp(clock.now(), TZ)  # HAILONG_CLOCK_SHIFT_S picks a busier moment
    broker = EmbeddedBroker.from_config(cfg.mqtt).start()
    service = Service.assemble(cfg)
    # The last 30 days: early in a month, "this month" alone would be nearly empty.
    first, days = (now - timedelta(days=30)).date(), 31
    period = "" if now.day >= 8 else "?period=last-month"
    seed_month(service.store, first_day=first, days=days, until=now)
    seed_month(service.store, first_day=first, days=days, until=now, site="tan-phong", seed=2, per_day=25,
               name="UBND xã Tân Phong — Bộ phận Một cửa",
               officers=[(f"tp-{oid[3:]}", name, code) for oid, name, code in reversed(OFFICERS)])
    service.auth.add_user("quanly", "manager", "mat-khau-demo-2026", sites=["kien-thuy"])
    service.auth.add_user("tinh", "viewer", "mat-khau-demo-2026")
    service.ingest.start()
    server = service.api.start()
    try:
        with browser() as b:
            for name, viewport in (("desktop", {"width": 1366, "height": 768}), ("phone", {"width": 390, "height": 844})):
                ctx = b.new_context(viewport=viewport, device_scale_factor=1)
                page = ctx.new_page()
                page.goto(server.url + "/login")
                page.fill("#login-user", "quanly")
                page.fill("#login-password", "mat-khau-demo-2026")
                page.click("#login-submit")
                page.wait_for_url(server.url + "/")
                page.screenshot(path=str(OUT / f"screenshot-overview-{name}.png"), full_page=(name == "phone"))
                if name == "desktop":
                    page.goto(server.url + "/officers" + period)
                    page.screenshot(path=str(OUT / "screenshot-officers.png"))
                    page.click("#officer-table tr[data-officer] a")
                    page.wait_for_url("**/officers/**")
                    page.screenshot(path=str(OUT / "screenshot-officer.png"), full_page=True)
                ctx.close()
            ctx = b.new_context(viewport={"width": 1366, "height": 768}, device_scale_factor=1)
            page = ctx.new_page()
            page.goto(server.url + "/login")
            page.fill("#login-user", "tinh")
            page.fill("#login-password", "mat-khau-demo-2026")
            page.click("#login-submit")
            page.wait_for_url(server.url + "/")
            page.goto(server.url + "/province" + period)
            page.screenshot(path=str(OUT / "screenshot-province.png"))
            ctx.close()
    finally:
        service.close()
        broker.stop()
    for f in sorted(OUT.glob("screenshot-*.png")):
        print(f.relative_to(ROOT), f.stat().st_size // 1024, "KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Screenshots of the dashboard for docs/ and the README, made with the same headless Chromium as the tests.

Stands up the real service (embedded broker, store, API, dashboard) on a temporary store filled
with a commune centre's month of sample data, logs in, and saves the overview and an officer page
at 1366x768 (an office screen) plus the overview at phone width. Run: `python scripts/screenshots.py`.
"""
from __future__ import annotations

import sys
import tempfile
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.config import config_from_dict  # noqa: E402
from broker.embedded import EmbeddedBroker  # noqa: E402
from broker.service import Service  # noqa: E402
from hailong.sample_data import seed_month  # noqa: E402
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
    now = datetime.now(TZ)
    broker = EmbeddedBroker.from_config(cfg.mqtt).start()
    service = Service.assemble(cfg)
    seed_month(service.store, first_day=date(now.year, now.month, 1), days=now.day, until=now)
    service.auth.add_user("quanly", "manager", "mat-khau-demo-2026")
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
                    page.goto(server.url + "/officers")
                    page.screenshot(path=str(OUT / "screenshot-officers.png"))
                    page.click("#officer-table tr[data-officer] a")
                    page.wait_for_url("**/officers/**")
                    page.screenshot(path=str(OUT / "screenshot-officer.png"), full_page=True)
                ctx.close()
    finally:
        service.close()
        broker.stop()
    for f in sorted(OUT.glob("screenshot-*.png")):
        print(f.relative_to(ROOT), f.stat().st_size // 1024, "KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

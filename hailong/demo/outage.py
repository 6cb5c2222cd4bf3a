"""The demo's staged outage: one counter's process is killed for a while, so an alert shows on the dashboard.

After `--outage-after` seconds the last counter is killed (as a power cut would: no goodbye, the
broker's last will says it is offline); the service's alert engine opens an "offline" alert once
the counter has been dark for the demo's alerts.offline_after_s, visible as the badge and on
/alerts. After `--outage-s` seconds the counter starts again, sends what it stored meanwhile, and
the alert resolves. Each step is a JSON line (event outage, alert, outage_over, alert_resolved).
"""
from __future__ import annotations

import threading
import time

from broker.alerts.messages import describe, title


def _watch(demo, device: str, state: str, stop: threading.Event, until: float | None = None) -> dict | None:
    """Poll the store until the counter's offline alert is in `state` (or `until` on the monotonic clock)."""
    while not stop.is_set() and (until is None or time.monotonic() < until):
        alerts = demo.safe(lambda: demo.store.alerts("all", limit=20), [])
        for a in alerts:
            if a["rule"] == "offline" and a["subject"] == device and a["state"] == state:
                return a
        stop.wait(0.5)
    return None


def stage_outage(demo, counter, after_s: float, length_s: float, stop: threading.Event) -> None:
    if stop.wait(after_s):
        return
    counter.kill()
    demo.out.emit({"event": "outage", "counter": counter.n, "device": counter.device, "for_s": length_s})
    back_at = time.monotonic() + length_s
    alert = _watch(demo, counter.device, "open", stop, until=back_at)
    if alert is not None:
        demo.out.emit({"event": "alert", "id": alert["id"], "rule": alert["rule"], "subject": alert["subject"],
                       "title": title(alert["rule"]), "text": describe(alert), "dashboard": demo.url + "/alerts"})
    if stop.wait(max(0.0, back_at - time.monotonic())):
        return
    counter.restart()
    demo.out.emit({"event": "outage_over", "counter": counter.n, "device": counter.device})
    if alert is not None:
        done = _watch(demo, counter.device, "resolved", stop)
        if done is not None:
            demo.out.emit({"event": "alert_resolved", "id": done["id"], "rule": done["rule"],
                           "subject": done["subject"]})

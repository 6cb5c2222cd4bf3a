"""The demo shows an alert: one counter is killed for a while, the dashboard's badge and /alerts show it
being offline, and its return resolves it."""
from __future__ import annotations

import json
import signal
import urllib.request

from tests.test_demo import RunningDemo, demo_args


def test_the_demo_stages_an_outage_that_opens_and_resolves_an_alert(tmp_path):
    demo = RunningDemo(demo_args(tmp_path / "d", "--counters", "2", "--rate", "30", "--seed", "3",
                                 "--outage-after", "2", "--outage-s", "14"))
    try:
        started = demo.wait_event(lambda r: r.get("event") == "started", what="start")
        outage = demo.wait_event(lambda r: r.get("event") == "outage", what="the outage")
        assert (outage["counter"], outage["device"]) == (2, "demo-c2")
        alert = demo.wait_event(lambda r: r.get("event") == "alert", timeout=40, what="the alert")
        assert (alert["rule"], alert["subject"]) == ("offline", "demo-c2")
        assert "Thiết bị mất kết nối" in alert["title"] and alert["dashboard"].endswith("/alerts")
        request = urllib.request.Request(f"{started['url']}/api/v1/alerts",
                                         headers={"Authorization": f"Bearer {started['api_token']}"})
        with urllib.request.urlopen(request, timeout=10) as r:
            listed = json.loads(r.read())
        assert listed["open"] >= 1 and any(a["subject"] == "demo-c2" for a in listed["items"])
        demo.wait_event(lambda r: r.get("event") == "outage_over", timeout=40, what="the counter's return")
        done = demo.wait_event(lambda r: r.get("event") == "alert_resolved", timeout=40, what="the resolve")
        assert done["id"] == alert["id"]
        demo.proc.send_signal(signal.SIGINT)
        assert demo.finish() == 0, demo.stderr
    finally:
        demo.kill()
    assert demo.events("error") == []
    (summary,) = demo.events("summary")
    assert summary["drained"] is True  # what the dark counter stored was sent once it was back

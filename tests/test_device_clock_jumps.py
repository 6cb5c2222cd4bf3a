"""The counter's wall clock jumps (a Pi has no RTC; NTP steps it), forwards and backwards, before
and after sync. Seqs, timers and acks must not care; the service fixes the times that need it.

The runtime runs in-process with the real MQTT uplink and a real Mosquitto; only its wall
clock and its "is NTP synced" answer are injected (device/clock.py SystemClock(wall=...)).
"""
from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest
from gpiozero.pins.mock import MockFactory

from broker.ingest import Ingest, IngestSettings
from broker.store import Store
from common import clock as common_clock
from device.clock import SystemClock
from device.config import config_from_dict
from device.display import TextDisplay
from device.panel import Panel
from device.runtime import DeviceRuntime
from tests.support import FakeService, Waiter

DAY = 86_400.0
Y2000 = datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()


class JumpingClock(SystemClock):
    """The shared clock plus `offset` seconds; `ntp` says whether the kernel believes it."""

    def __init__(self):
        self.offset = Y2000 - common_clock.now()  # a Pi without RTC boots in the past
        self.ntp = False
        super().__init__("auto", wall=lambda: common_clock.now() + self.offset)

    def synced(self) -> bool:
        return self.ntp


@pytest.fixture
def counter(tmp_path, mosquitto):
    started = []

    def start():
        cfg = config_from_dict({
            "device": {"id": "dev-1", "site": "kien-thuy", "counter": "3", "data_dir": str(tmp_path / "data")},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "backoff_min_s": 0.1, "backoff_max_s": 0.5},
            "ledger": {"ack_timeout_s": 2},
            "rating": {"repeat_gap_s": 0},
        })
        records, factory, jumpy = Waiter(), MockFactory(), JumpingClock()
        rt = DeviceRuntime(
            cfg,
            panel_factory=lambda on_input: Panel(
                rating_pins=[5, 6, 13, 19], led_pins=[12, 16, 20, 21], next_pin=23, recall_pin=24,
                buzzer_pin=None, pin_factory=factory, on_input=on_input),
            display=TextDisplay(4, on_change=lambda text: records.append({"display": text})),
            emit=records.append, clock=jumpy,
        )
        thread = threading.Thread(target=rt.run, daemon=True)
        thread.start()
        started.append((rt, thread))
        assert rt.ready.wait(10)
        records.wait_for(lambda items: {"online": True} in items, what="online")
        return rt, records, jumpy

    yield start
    for rt, thread in started:
        rt.stop()
        thread.join(10)


def stored(records) -> list[dict]:
    return [r["stored"] for r in records.items if "stored" in r]


def press(rt, records, button: str) -> dict:
    n = len(stored(records))
    rt.panel.click(button)
    return records.wait_for(lambda items: stored(records)[n:], what=f"press {button} stored")[0]


def test_seqs_timers_and_ack_timeouts_ignore_wall_clock_jumps(counter, mosquitto):
    service = FakeService(mosquitto, auto_ack=False)
    try:
        rt, records, jumpy = counter()
        events = [press(rt, records, "1")]
        service.received.wait_for(lambda items: items, what="the first send")
        jumpy.offset -= DAY  # backwards, before sync, while the event waits for its ack
        # No ack: the device must send again after ack_timeout_s of *monotonic* time. A wall-clock
        # timer would wait a day here.
        service.received.wait_for(lambda items: len(items) >= 2, timeout=10,
                                  what="a resend after the ack timeout, across a backward jump")
        assert service.received.items[1][1] == events[0]
        events.append(press(rt, records, "2"))
        # The thank-you animation runs on the monotonic clock too: it ends although "now" went back a day.
        records.wait_for(lambda items: [r for r in items if "display" in r][-1] == {"display": "----"},
                         what="the animation to end after a backward jump")
        jumpy.offset += 3 * 365 * DAY  # forwards, still before sync
        events.append(press(rt, records, "3"))
        jumpy.offset, jumpy.ntp = 0.0, True  # NTP: true time, synced
        events.append(press(rt, records, "4"))
        jumpy.offset = -120.0  # NTP steps back two minutes
        events.append(press(rt, records, "1"))
        jumpy.offset = DAY  # and a day forwards
        events.append(press(rt, records, "2"))
        assert [e["seq"] for e in events] == list(range(1, 7)), "one seq per event, in press order"
        assert [e["clock_ok"] for e in events] == [False, False, False, True, True, True]
        monos = [e["mono"] for e in events]
        assert monos == sorted(monos), "mono only moves forwards"
        service.received.wait_for(lambda items: {e["seq"] for _, e in items} >= set(range(1, 7)), timeout=10)
        service.ack("dev-1", events[0]["ledger"], range(1, 7))
        records.wait_for(lambda items: sorted(s for r in items if "acked" in r for s in r["acked"]) ==
                         list(range(1, 7)), what="every event acked")
        assert rt.ledger.backlog() == 0
    finally:
        service.close()


def test_the_service_corrects_unsynced_times_from_the_first_synced_event_of_the_boot(counter, mosquitto, tmp_path):
    store = Store.open(tmp_path / "service" / "hailong.db")
    store.register_device("dev-1", "kien-thuy", "3")
    ingest = Ingest(store, IngestSettings(host=mosquitto.host, port=mosquitto.port, batch_wait_ms=5)).start()
    try:
        assert ingest.connected.wait(10)
        started_ms = int(common_clock.now() * 1000)
        rt, records, jumpy = counter()
        events = [press(rt, records, "1")]
        jumpy.offset -= DAY
        events.append(press(rt, records, "2"))
        jumpy.offset += 3 * 365 * DAY
        events.append(press(rt, records, "3"))
        jumpy.offset, jumpy.ntp = 0.0, True
        events.append(press(rt, records, "4"))
        jumpy.offset = -120.0
        events.append(press(rt, records, "1"))
        records.wait_for(lambda items: sum(len(r["acked"]) for r in items if "acked" in r) == 5, what="all acked")
        got = {e["seq"]: e for e in store.events(device="dev-1")}
        synced = events[3]
        offset_ms = synced["ts"] - synced["mono"] * 1000
        for ev in events[:3]:
            row = got[ev["seq"]]
            # Whatever the wall clock said, the time is the boot's offset plus the event's own mono.
            assert row["ts_source"] == "corrected" and row["ts"] == round(ev["mono"] * 1000 + offset_ms)
            assert started_ms - 1000 <= row["ts"] <= synced["ts"]
            assert row["event"]["ts"] == ev["ts"], "the device's own fields are kept as sent"
        assert [got[s]["ts"] for s in (1, 2, 3, 4)] == sorted(got[s]["ts"] for s in (1, 2, 3, 4))
        # A synchronised clock is believed, NTP's own steps included.
        assert (got[4]["ts_source"], got[4]["ts"]) == ("device", synced["ts"])
        assert (got[5]["ts_source"], got[5]["ts"]) == ("device", events[4]["ts"])
        ratings = sum(r["ratings"] for r in store.satisfaction("counter", "2000-01-01", "2100-01-01")["rows"])
        assert ratings == 5 and store.counts()["duplicates"] == 0
    finally:
        ingest.stop()
        store.close()

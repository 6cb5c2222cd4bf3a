"""The kiosk firmware as a real process against the real service (ingest, store, API) on Mosquitto.

Both read the real clock here (the kiosk process cannot take the test's), so they agree on the day.
"""
from __future__ import annotations

import httpx
import pytest

from broker.api import ApiServer, create_app
from broker.auth import Auth
from broker.config import config_from_dict
from broker.ingest import Ingest, IngestSettings
from broker.store import Store
from common.periods import DEFAULT_TZ, today, zone
from tests.mosquitto import free_port
from tests.support import DeviceProcess
from tests.test_kiosk_e2e import kiosk_config


@pytest.fixture
def service(tmp_path, mosquitto):
    db = tmp_path / "service" / "hailong.db"
    cfg = config_from_dict({"mqtt": {"embedded": False, "host": mosquitto.host, "port": mosquitto.port},
                            "store": {"url": f"sqlite:///{db}"}, "http": {"port": free_port()}})
    store = Store.open(cfg.store.url)
    auth = Auth.from_config(cfg)
    ingest = Ingest(store, IngestSettings(host=mosquitto.host, port=mosquitto.port, batch_wait_ms=5)).start()
    assert ingest.connected.wait(10)
    server = ApiServer(create_app(store=store, ingest=ingest, auth=auth, cfg=cfg), cfg.http.host,
                       cfg.http.port).start()
    api = httpx.Client(base_url=server.url, timeout=10,
                       headers={"Authorization": f"Bearer {auth.create_token('admin', 'test-admin')}"})
    store.upsert_site("s1", "UBND xã", tz=DEFAULT_TZ)
    for queue, name in (("A", "Đất đai"), ("B", "Tư pháp – Hộ tịch")):
        r = api.post("/api/v1/queues", json={"site": "s1", "queue": queue, "name": name, "prefix": queue})
        assert r.status_code == 201, r.text
    store.register_device("kiosk-1", "s1", "kiosk")
    try:
        yield store, api
    finally:
        api.close()
        server.stop()
        ingest.stop()
        auth.close()
        store.close()


@pytest.fixture
def kiosk(tmp_path, mosquitto):
    cfg, printer = kiosk_config(tmp_path, mosquitto, site="s1")
    p = DeviceProcess(cfg)
    p.printer_file = printer
    p.wait_ready()
    yield p
    p.close()


def tickets(api, day):
    return [t["ticket"] for t in api.get("/api/v1/tickets", params={"site": "s1", "date": day}).json()["items"]]


def test_broker_stopped_while_the_kiosk_prints_five_tickets(service, kiosk, mosquitto):
    store, api = service
    day = today(zone(DEFAULT_TZ)).isoformat()
    kiosk.wait("online", lambda v: v[-1] is True)
    kiosk.wait("block", lambda v: len(v) >= 2)  # a block per queue, asked for at connect
    kiosk.send("take A", "take B priority")
    online_first = kiosk.wait("printed", lambda v: len(v) == 2)
    assert [(p["source"], p["priority"]) for p in online_first] == [("service", False), ("service", True)]

    mosquitto.stop()
    kiosk.wait("online", lambda v: v[-1] is False)
    kiosk.send("take A", "take A priority", "take B", "take A", "take A")
    printed = kiosk.wait("printed", lambda v: len(v) == 7)
    assert all(p["source"] == "block" for p in printed[2:])

    mosquitto.start()
    kiosk.wait("online", lambda v: v[-1] is True)
    kiosk.send("take A")  # online again: the service's own sequence skips every reserved number
    printed = kiosk.wait("printed", lambda v: len(v) == 8)
    kiosk.wait("acked", lambda v: sum(len(a) for a in v) == 8, timeout=30)
    numbers = [p["ticket"] for p in printed]
    assert len(set(numbers)) == 8, numbers  # unique for the site and the day
    stored = tickets(api, day)
    assert sorted(stored) == sorted(numbers)  # each printed ticket stored, exactly once
    assert store.dead_letters(10, 0) == []
    waiting = api.get("/api/v1/tickets", params={"site": "s1", "date": day}).json()["items"]
    assert {t["ticket"]: t["priority"] for t in waiting}[printed[3]["ticket"]] is True


def test_counter_calls_the_kiosks_tickets_priority_first_noshow_then_idle(service, kiosk, mosquitto, tmp_path):
    """Real kiosk and real counter processes, the real service between them."""
    from tests.support import write_config

    store, api = service
    store.register_device("dev-1", "s1", "1")
    r = api.put("/api/v1/counters/s1/1", json={"name": "Quầy 1", "queues": ["A"]})
    assert r.status_code == 200, r.text
    day = today(zone(DEFAULT_TZ)).isoformat()
    kiosk.wait("online", lambda v: v[-1] is True)
    for n, line in enumerate(("take A", "take B", "take A priority", "take A"), 1):
        kiosk.send(line)  # one at a time: "ahead" counts the takes the service has stored
        printed = kiosk.wait("printed", lambda v: len(v) == n)
        kiosk.wait("acked", lambda v: sum(len(a) for a in v) == n, timeout=30)
    a1, _, a_priority, a3 = (p["ticket"] for p in printed)
    assert [p["ahead"] for p in printed] == [0, 0, 0, 2]  # a priority ticket waits only for priority ones

    cfg = write_config(tmp_path, mosquitto, extra="[staff]\nhold_noshow_s = 0.5\n", counter="1")
    cfg.write_text(cfg.read_text().replace('site = "kien-thuy"', 'site = "s1"'))
    counter = DeviceProcess(cfg)
    try:
        counter.wait_ready()
        counter.wait("online", lambda v: v[-1] is True)
        counter.send("press next")
        counter.wait("display", lambda v: v[-1] == a_priority)  # priority overtakes
        counter.send("hold recall 0.8")  # the priority citizen does not come: no-show, then the next
        counter.wait("display", lambda v: v[-1] == a1)
        counter.send("press next")
        counter.wait("display", lambda v: v[-1] == a3)
        counter.send("press next")
        counter.wait("display", lambda v: v[-1] == "IdLE")  # only B waits, and counter 1 serves A
        counter.wait("acked", lambda v: sum(len(a) for a in v) == len(counter.stored()), timeout=30)
    finally:
        counter.close()
    status = {t["ticket"]: t["status"] for t in api.get("/api/v1/tickets", params={"site": "s1", "date": day})
              .json()["items"]}
    assert status == {a_priority: "noshow", a1: "done", a3: "done", printed[1]["ticket"]: "waiting"}

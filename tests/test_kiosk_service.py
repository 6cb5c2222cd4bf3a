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
from common.clock import now
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


def start_counter(tmp_path, mosquitto, device_id: str, counter: str) -> DeviceProcess:
    from tests.support import write_config

    cfg = write_config(tmp_path, mosquitto, device_id=device_id, counter=counter,
                       data_dir=tmp_path / f"{device_id}-data", extra="[staff]\nhold_noshow_s = 0.5\n")
    cfg.write_text(cfg.read_text().replace('site = "kien-thuy"', 'site = "s1"'))
    p = DeviceProcess(cfg)
    p.wait_ready()
    p.wait("online", lambda v: v[-1] is True)
    return p


def test_two_counters_call_the_kiosks_tickets_in_order_with_times(service, kiosk, mosquitto, tmp_path):
    """Real kiosk and counter processes, the real service between them; times checked against our clock.

    Counter 1 serves A, counter 2 serves A and B. Priority overtakes; a long RECALL is a no-show;
    a short one a recall; IdLE when the counter's queues are empty.
    """
    store, api = service
    for device, counter, queues in (("dev-1", "1", ["A"]), ("dev-2", "2", ["A", "B"])):
        store.register_device(device, "s1", counter)
        r = api.put(f"/api/v1/counters/s1/{counter}", json={"name": f"Quầy {counter}", "queues": queues})
        assert r.status_code == 200, r.text
    day = today(zone(DEFAULT_TZ)).isoformat()
    kiosk.wait("online", lambda v: v[-1] is True)
    at: dict[str, float] = {}
    for n, line in enumerate(("take A", "take A", "take B", "take A priority"), 1):
        at[f"take{n}"] = now()
        kiosk.send(line)  # one at a time: "ahead" counts the takes the service has stored
        printed = kiosk.wait("printed", lambda v: len(v) == n)
        kiosk.wait("acked", lambda v: sum(len(a) for a in v) == n, timeout=30)
    a1, a2, b1, a3 = (p["ticket"] for p in printed)
    assert [p["ahead"] for p in printed] == [0, 1, 0, 0]  # a priority ticket waits only for priority ones
    c1 = start_counter(tmp_path, mosquitto, "dev-1", "1")
    c2 = start_counter(tmp_path, mosquitto, "dev-2", "2")
    try:
        def act(name, dev, line, shows):
            at[name] = now()
            dev.send(line)
            dev.wait("display", lambda v: v[-1] == shows)

        act("c1_next", c1, "press next", a3)  # priority overtakes
        act("c2_next", c2, "press next", a1)  # the oldest among A and B
        act("c2_noshow", c2, "hold recall 0.8", a2)  # A001 never came: no-show, then the next
        at["c2_noshow"] += 0.5  # the no-show is the moment the hold reaches hold_noshow_s
        at["c2_recall"] = now()
        c2.send("press recall")
        c2.wait("stored", lambda v: any(e.get("action") == "recall" for e in v))
        act("c1_idle", c1, "press next", "IdLE")  # only B waits, and counter 1 serves A
        act("c2_next2", c2, "press next", b1)
        for dev in (c1, c2):
            dev.wait("acked", lambda v, d=dev: sum(len(a) for a in v) == len(d.stored()), timeout=30)
    finally:
        c1.close()
        c2.close()
    got = {t["ticket"]: t for t in api.get("/api/v1/tickets", params={"site": "s1", "date": day}).json()["items"]}
    assert {k: (t["status"], t["counter"]) for k, t in got.items()} == {
        a1: ("noshow", "2"), a2: ("done", "2"), a3: ("done", "1"), b1: ("called", "2")}

    def near(ms, key):  # the device stamps the press within a second of our reading
        assert ms is not None and abs(ms / 1000 - at[key]) < 1.0, (ms, key, at[key])

    for n, ticket in enumerate((a1, a2, b1, a3), 1):
        near(got[ticket]["taken_ts"], f"take{n}")
    near(got[a3]["called_ts"], "c1_next")
    near(got[a3]["done_ts"], "c1_idle")
    near(got[a1]["called_ts"], "c2_next")
    near(got[a1]["done_ts"], "c2_noshow")
    near(got[a2]["called_ts"], "c2_noshow")
    near(got[a2]["recalled_ts"], "c2_recall")
    near(got[a2]["done_ts"], "c2_next2")
    assert got[a2]["recalls"] == 1
    rows = {r["key"]: r for r in api.get("/api/v1/waiting", params={"group": "queue", "from": day, "to": day})
            .json()["rows"]}
    a = rows["s1/A"]
    assert (a["tickets"], a["served"], a["no_show"]) == (3, 2, 1)
    waits = [(got[t]["called_ts"] - got[t]["taken_ts"]) / 1000 for t in (a1, a2, a3)]
    assert abs(a["wait_mean_s"] - sum(waits) / 3) < 1.0

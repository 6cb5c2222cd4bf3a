"""The queue end to end: kiosk requests and take events, NEXT/RECALL/no-show at two counters serving
overlapping queues, the tickets and waiting-time API. Real Mosquitto, real store file, real ingest and
uvicorn; the kiosk and the counters are paho clients speaking the protocol (the kiosk firmware is
another branch). The service's clock is the test's: every time asserted is one the test chose.
"""
from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from datetime import timedelta

import httpx
import paho.mqtt.client as mqtt
import pytest

from broker.api import ApiServer, create_app
from broker.auth import Auth
from broker.config import config_from_dict
from broker.ingest import Ingest, IngestSettings
from broker.store import Store
from broker.store.batch import Incoming
from common.periods import local_day
from protocol.codec import encode
from protocol.events import make_event
from protocol.messages import make_status
from protocol.tickets import make_request
from common import clock as real_clock
from common.periods import zone
from tests.mosquitto import free_port
from tests.support import DeviceProcess, Waiter, write_config
from tests.test_broker_api import NOW, TZ

T0 = int(NOW.timestamp() * 1000)
DAY = local_day(T0, TZ)
S = 1000  # ms


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms

    def now(self) -> float:
        return self.ms / 1000


class RealClock(Clock):
    """The machine's clock (HAILONG_NOW-aware), for tests with counter processes that stamp their own time."""

    def __init__(self) -> None:
        super().__init__(0)

    @property
    def ms(self) -> int:
        return real_clock.now_ms()

    @ms.setter
    def ms(self, value: int) -> None:
        pass


@dataclass
class Hall:
    store: Store
    ingest: Ingest
    clock: Clock
    api: httpx.Client
    broker: object


@pytest.fixture(params=["test"])
def hall(request, tmp_path, mosquitto):
    db = tmp_path / "service" / "hailong.db"
    cfg = config_from_dict({"mqtt": {"embedded": False, "host": mosquitto.host, "port": mosquitto.port},
                            "store": {"url": f"sqlite:///{db}"}, "http": {"port": free_port()}})
    clock = Clock(T0) if request.param == "test" else RealClock()
    store = Store.open(cfg.store.url)
    auth = Auth.from_config(cfg)
    ingest = Ingest(store, IngestSettings(host=mosquitto.host, port=mosquitto.port, batch_wait_ms=5),
                    now_ms=clock.now_ms).start()
    assert ingest.connected.wait(10)
    server = ApiServer(create_app(store=store, ingest=ingest, auth=auth, cfg=cfg, clock=clock.now),
                       cfg.http.host, cfg.http.port).start()
    api = httpx.Client(base_url=server.url, timeout=10,
                       headers={"Authorization": f"Bearer {auth.create_token('admin', 'test-admin')}"})
    try:
        yield Hall(store, ingest, clock, api, mosquitto)
    finally:
        api.close()
        server.stop()
        ingest.stop()
        auth.close()
        store.close()


class Device:
    """A kiosk or a counter as MQTT sees it: online status, events stamped by the test's clock, its cmds and acks."""

    def __init__(self, hall: Hall, device: str, counter: str, site: str = "s1") -> None:
        self.hall, self.device, self.site, self.counter = hall, device, site, counter
        self.ledger = secrets.token_hex(8)
        self.seq = 0
        self.acks, self.cmds = Waiter(), Waiter()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(hall.broker.host, hall.broker.port)
        self.client.loop_start()
        base = f"hailong/v1/{device}"
        self.client.subscribe([(f"{base}/ack", 1), (f"{base}/cmd", 1)])
        assert subscribed.wait(10)
        # The service answers only a device it knows to be online (a live NEXT, not a replayed one).
        self._publish("status", make_status(True, fw="test", ledger=self.ledger, ts=hall.clock.ms), retain=True)
        self.hall.store.register_device(device, site, counter)

    def _on_message(self, client, userdata, msg):
        kind = msg.topic.rsplit("/", 1)[1]
        (self.acks if kind == "ack" else self.cmds).append(json.loads(msg.payload))

    def _publish(self, kind: str, payload: dict, retain: bool = False) -> None:
        self.client.publish(f"hailong/v1/{self.device}/{kind}", encode(payload), qos=1,
                            retain=retain).wait_for_publish(5)

    def event(self, type_: str, ticket: str | None = None, officer: str | None = None, **fields) -> dict:
        self.seq += 1
        return make_event(type_, device=self.device, site=self.site, counter=self.counter, ledger=self.ledger,
                          seq=self.seq, ts=self.hall.clock.ms, clock_ok=True, boot="boot-1", mono=float(self.seq),
                          officer=officer, ticket=ticket, **fields)

    def send(self, ev: dict) -> dict:
        """Publish an event and wait for the ack naming it; the ack."""
        self._publish("event", ev)
        return self.acks.wait_for(lambda acks: next(
            (a for a in acks if a["ledger"] == ev["ledger"] and (ev["seq"] in a["seqs"] or any(
                r["seq"] == ev["seq"] for r in a.get("rejected", [])))), None), what=f"ack of {ev['seq']}")

    def request(self, op: str, queue: str, **kw) -> dict:
        """Send a request and wait for its answer (a `number` or `block` command with its req)."""
        req = secrets.token_hex(4)
        self._publish("request", make_request(op, req, queue, **kw))
        return self.cmds.wait_for(lambda cmds: next((c for c in cmds if c.get("req") == req), None),
                                  what=f"answer to {op} {req}")

    def take(self, queue: str, priority: bool = False) -> str:
        """What a kiosk does at a press: ask for a number, store the take event (acked), print."""
        answer = self.request("take", queue, priority=priority)
        assert "error" not in answer, answer
        self.send(self.event("take", ticket=answer["ticket"], queue=queue, priority=priority, source="service",
                             date=answer["date"]))
        return answer["ticket"]

    def call(self, action: str, officer: str = "o1") -> dict | None:
        """A call event; for next/recall/noshow the `ticket` command answering it."""
        ev = self.event("call", officer=officer, action=action)
        self.send(ev)
        if action == "close":
            return None
        return self.cmds.wait_for(lambda cmds: next((c for c in cmds if c.get("cmd") == "ticket"
                                                     and c["seq"] == ev["seq"]), None), what=f"{action} answer")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def devices(hall):
    made = []

    def make(device: str, counter: str) -> Device:
        made.append(Device(hall, device, counter))
        return made[-1]

    yield make
    for d in made:
        d.close()


def setup_queues(hall: Hall, site: str = "s1") -> None:
    """Site s1 with queues A (Đất đai) and B (Tư pháp); counter 1 serves A, counter 2 serves A and B."""
    hall.store.upsert_site(site, "UBND xã", tz="Asia/Ho_Chi_Minh")
    for queue, name in (("A", "Đất đai"), ("B", "Tư pháp")):
        r = hall.api.post("/api/v1/queues", json={"site": site, "queue": queue, "name": name, "prefix": queue})
        assert r.status_code == 201, r.text
    for counter, queues in (("1", ["A"]), ("2", ["A", "B"])):
        r = hall.api.put(f"/api/v1/counters/{site}/{counter}", json={"name": f"Quầy {counter}", "queues": queues})
        assert r.status_code == 200 and r.json()["queues"] == queues, r.text


def day_after(days: int) -> str:
    return (NOW.date() + timedelta(days=days)).isoformat()


def at(hall: Hall, seconds: int) -> None:
    hall.clock.ms = T0 + seconds * S


def test_two_counters_call_in_order_priority_first_with_recall_noshow_and_times(hall, devices):
    setup_queues(hall)
    kiosk, c1, c2 = devices("kiosk-1", "kiosk"), devices("dev-1", "1"), devices("dev-2", "2")
    taken = {}
    for second, queue, priority in ((0, "A", False), (10, "A", False), (30, "B", False), (40, "A", True)):
        at(hall, second)
        taken[second] = kiosk.take(queue, priority)
    assert taken == {0: "A001", 10: "A002", 30: "B001", 40: "A003"}
    assert hall.store.waiting_counts("s1", DAY) == {"A": 3, "B": 1}

    at(hall, 60)
    assert c1.call("next")["ticket"] == "A003"  # priority overtakes the older A001 and A002
    at(hall, 70)
    assert c2.call("next", "o2")["ticket"] == "A001"  # the oldest among A and B
    at(hall, 80)
    assert c2.call("recall", "o2")["ticket"] == "A001"
    at(hall, 90)
    assert c2.call("noshow", "o2")["ticket"] == "A002"
    at(hall, 120)
    idle = c1.call("next")
    assert idle["ticket"] == "----" and idle["idle"] is True  # nobody waits in A
    at(hall, 150)
    assert c2.call("next", "o2")["ticket"] == "B001"
    at(hall, 160)
    c2.send(c2.event("rating", ticket="B001", officer="o2", score=4, scale=4))
    at(hall, 200)
    c2.call("close", "o2")

    tickets = hall.api.get("/api/v1/tickets", params={"site": "s1", "date": DAY}).json()["items"]
    got = {t["ticket"]: t for t in tickets}
    assert [t["ticket"] for t in tickets] == ["A001", "A002", "B001", "A003"]
    assert {k: got[k]["status"] for k in got} == {"A001": "noshow", "A002": "done", "B001": "done", "A003": "done"}
    ms = lambda s: T0 + s * S  # noqa: E731
    assert (got["A001"]["called_ts"], got["A001"]["recalls"], got["A001"]["recalled_ts"], got["A001"]["done_ts"]) \
        == (ms(70), 1, ms(80), ms(90))
    assert (got["A003"]["taken_ts"], got["A003"]["called_ts"], got["A003"]["done_ts"], got["A003"]["counter"],
            got["A003"]["officer"], got["A003"]["priority"]) == (ms(40), ms(60), ms(120), "1", "o1", True)
    assert got["B001"]["rating"]["score"] == 4 and got["B001"]["rated_ts"] == ms(160)
    assert got["A002"]["rating"] is None

    rows = hall.api.get("/api/v1/waiting", params={"group": "queue", "from": DAY, "to": DAY}).json()["rows"]
    a, b = rows
    assert (a["key"], a["name"], a["tickets"], a["served"], a["no_show"]) == ("s1/A", "Đất đai", 3, 2, 1)
    assert a["wait_mean_s"] == pytest.approx((20 + 70 + 80) / 3) and a["wait_p50_s"] == 70
    assert a["wait_p90_s"] == pytest.approx(78) and a["service_mean_s"] == 60
    assert (b["key"], b["tickets"], b["served"], b["wait_mean_s"], b["service_mean_s"]) == ("s1/B", 1, 1, 120, 50)
    assert (a["rated"], b["rated"]) == (0, 1)
    officers = hall.api.get("/api/v1/waiting", params={"group": "officer", "from": DAY, "to": DAY}).json()["rows"]
    assert [(r["key"], r["tickets"], r["served"], r["no_show"]) for r in officers] == [("o1", 1, 1, 0),
                                                                                      ("o2", 3, 2, 1)]
    calls = hall.store.calls_after("s1", 0, 100)
    assert [(c["ticket"], c["counter"], c["action"], c["recall"]) for c in calls] == [
        ("A003", "1", "next", False), ("A001", "2", "next", False), ("A001", "2", "recall", True),
        ("A002", "2", "noshow", False), ("B001", "2", "next", False)]
    assert [c["id"] for c in hall.store.recent_calls("s1", 2)] == [calls[-1]["id"], calls[-2]["id"]]
    assert hall.store.calls_after("s1", calls[-1]["id"], 10) == []
    assert hall.store.waiting_counts("s1", DAY) == {"A": 0, "B": 0}


def test_numbers_stay_unique_with_blocks_and_a_clashing_take_is_dead_lettered(hall, devices):
    setup_queues(hall)
    k1, k2 = devices("kiosk-1", "kiosk-a"), devices("kiosk-2", "kiosk-b")
    block = k1.request("block", "A", date=DAY)
    assert (block["cmd"], block["prefix"], block["first"], block["last"], block["date"]) == ("block", "A", 1, 10, DAY)
    assert k1.request("block", "A", date=DAY)["first"] == 11  # a new request: a new block
    assert k2.take("A") == "A021"
    # Offline, k1 prints from its block; the take reaches the service later, exactly once.
    from_block = k1.event("take", ticket="A001", queue="A", priority=False, source="block", date=DAY)
    assert k1.send(from_block)["seqs"] == [from_block["seq"]]
    # A kiosk printing a number another kiosk holds: refused in the ack, kept as a dead letter, never stored.
    clash = k2.event("take", ticket="A001", queue="A", priority=False, source="block", date=DAY)
    ack = k2.send(clash)
    assert ack["seqs"] == [] and "already held" in ack["rejected"][0]["reason"]
    assert "already held" in hall.store.dead_letters(10, 0)[0]["reason"]
    # A number printed beyond what was handed out is never handed out again.
    k2.send(k2.event("take", ticket="A040", queue="A", priority=False, source="block", date=DAY))
    assert k2.take("A") == "A041"
    tickets = [t["ticket"] for t in hall.api.get("/api/v1/tickets", params={"site": "s1", "date": DAY}).json()["items"]]
    assert sorted(tickets) == ["A001", "A021", "A040", "A041"]
    assert len(tickets) == len(set(tickets))


def test_a_take_resent_after_a_lost_ack_is_stored_once(hall, devices):
    setup_queues(hall)
    kiosk = devices("kiosk-1", "kiosk")
    answer = kiosk.request("take", "B", priority=False)
    ev = kiosk.event("take", ticket=answer["ticket"], queue="B", priority=False, source="service", date=DAY)
    kiosk.send(ev)
    kiosk.acks.items.clear()  # the ack was lost: the ledger sends the event again
    assert kiosk.send(ev)["seqs"] == [ev["seq"]]
    assert [t["ticket"] for t in hall.store.tickets("s1", DAY)] == ["B001"]
    assert hall.store.waiting_counts("s1", DAY) == {"A": 0, "B": 1}


def test_a_request_is_refused_clearly_and_a_redelivered_one_gets_the_same_answer(hall, devices):
    setup_queues(hall)
    kiosk = devices("kiosk-1", "kiosk")
    kiosk.client.publish("hailong/v1/kiosk-1/request", b'{"req": "not hex", "op": "take"}', qos=1).wait_for_publish(5)
    kiosk.client.publish("hailong/v1/kiosk-1/request", b"\xff{", qos=1).wait_for_publish(5)
    refused = kiosk.request("take", "Z", priority=False)  # answered after the malformed ones were dropped
    assert refused["error"] == "unknown queue 'Z' at site 's1'"
    req = make_request("block", "0123abcd", "A", date=DAY)
    for _ in range(2):
        kiosk._publish("request", req)
    answers = kiosk.cmds.wait_for(lambda cmds: [c for c in cmds if c.get("req") == "0123abcd"][1:] and
                                  [c for c in cmds if c.get("req") == "0123abcd"], what="both answers")
    assert answers[0] == answers[1] and (answers[0]["first"], answers[0]["last"]) == (1, 10)
    # A block for a day after tomorrow is not reserved (a block for another day is void anyway): no answer,
    # which the next request's answer proves, since requests are answered in order.
    kiosk._publish("request", make_request("block", "00000bad", "A", date=day_after(2)))
    assert kiosk.request("block", "A", date=day_after(1))["first"] == 1  # tomorrow's own sequence
    assert not [c for c in kiosk.cmds.items if c.get("req") == "00000bad"]
    stranger = Device(hall, "kiosk-9", "x")
    try:
        hall.store.register_device("kiosk-8", "s1", "x")  # kiosk-9 is now unregistered: x has one device
        assert "not registered" in stranger.request("take", "A", priority=False)["error"]
    finally:
        stranger.close()


def test_the_queue_api_refuses_bad_input_clearly(hall):
    setup_queues(hall)
    api = hall.api
    r = api.post("/api/v1/queues", json={"site": "s1", "queue": "C", "name": "x", "prefix": "A"})
    assert r.status_code == 409 and "prefix 'A' is already printed by queue 'A'" in r.json()["detail"]
    assert api.post("/api/v1/queues", json={"site": "s1", "queue": "A", "prefix": "Q"}).status_code == 409
    assert api.post("/api/v1/queues", json={"site": "nope", "queue": "C", "prefix": "C"}).status_code == 404
    assert api.post("/api/v1/queues", json={"site": "s1", "queue": "C", "prefix": "c"}).status_code == 422
    r = api.put("/api/v1/counters/s1/3", json={"queues": ["A", "Z"]})
    assert r.status_code == 404 and "no queue 'Z'" in r.json()["detail"]
    assert api.get("/api/v1/counters/s1/3").status_code == 404  # refused before anything changed
    assert api.get("/api/v1/waiting", params={"group": "queue", "from": DAY, "to": "2000-01-01"}).status_code == 422
    assert api.get("/api/v1/tickets", params={"site": "s1", "date": "2026-02-30"}).status_code == 422
    r = api.get("/api/v1/tickets", params={"site": "s1", "date": "20261118"})
    assert r.status_code == 422 and r.json()["detail"] == "date: expected a date YYYY-MM-DD, got '20261118'"
    assert api.put("/api/v1/queues/s1/A", json={"name": "Đất đai 2", "prefix": "D"}).json()["prefix"] == "D"
    assert [c["queues"] for c in api.get("/api/v1/counters", params={"site": "s1"}).json()["items"]] == [["A"],
                                                                                                       ["A", "B"]]
    assert api.delete("/api/v1/queues/s1/A").status_code == 204
    assert api.get("/api/v1/counters/s1/2").json()["queues"] == ["B"]
    assert api.get("/api/v1/queues/s1/A").status_code == 404


@pytest.mark.parametrize("hall", ["real"], indirect=True)
def test_real_counter_processes_show_queue_tickets_and_the_idle_sign(hall, tmp_path):
    """The counter firmware as it is (simulated pins) against queue answers: tickets, priority, idle, rating link."""
    setup_queues(hall, "kien-thuy")
    kiosk = Device(hall, "kiosk-1", "kiosk", site="kien-thuy")
    counters = []
    try:
        for second, queue, priority in ((0, "A", False), (1, "B", False), (2, "A", True)):
            kiosk.take(queue, priority)
        for i in (1, 2):
            hall.store.register_device(f"dev-{i}", "kien-thuy", str(i))
            cfg = write_config(tmp_path, hall.broker, device_id=f"dev-{i}", counter=str(i),
                               data_dir=tmp_path / f"data-{i}", extra="[rating]\nrepeat_gap_s = 0\n")
            counters.append(DeviceProcess(cfg))
            counters[-1].wait_ready()
            counters[-1].wait("online", lambda v: v[-1] is True)
        dev1, dev2 = counters
        dev1.send("press next")
        dev1.wait("display", lambda v: v[-1] == "A002")  # the priority ticket first
        dev2.send("press next")
        dev2.wait("display", lambda v: v[-1] == "A001")  # then the oldest among A and B
        dev1.send("wait 0.2", "press next")
        dev1.wait("display", lambda v: v[-1] == "----")  # nobody left in A
        dev2.send("press 4")
        dev2.wait("acked", lambda v: sum(map(len, v)) >= 2)
        day = local_day(real_clock.now_ms(), zone("Asia/Ho_Chi_Minh"))
        got = {t["ticket"]: t for t in hall.store.tickets("kien-thuy", day)}
        assert {k: t["status"] for k, t in got.items()} == {"A001": "called", "B001": "waiting", "A002": "done"}
        assert got["A001"]["rating"]["score"] == 4 and got["A001"]["counter"] == "2"
        assert hall.store.waiting_counts("kien-thuy") == {"A": 0, "B": 1}
    finally:
        for dev in counters:
            dev.close()
        kiosk.close()


def test_a_call_committed_but_not_applied_is_applied_when_resent_and_an_applied_one_only_answered(hall, devices):
    setup_queues(hall)
    kiosk, c1 = devices("kiosk-1", "kiosk"), devices("dev-1", "1")
    kiosk.take("A")
    at(hall, 30)
    kiosk.take("A")
    at(hall, 60)
    nxt = c1.event("call", officer="o1", action="next")
    # The service stored the NEXT and died before applying it; the counter, never acked, sends it again.
    hall.store.ingest([Incoming("dev-1", encode(nxt), hall.clock.ms)])
    c1.send(nxt)
    answer = c1.cmds.wait_for(lambda cmds: [c for c in cmds if c.get("seq") == nxt["seq"]], what="answer")[0]
    assert answer["ticket"] == "A001"
    c1.cmds.items.clear()
    c1.send(nxt)  # once more, after it was applied: the same answer, no second call
    again = c1.cmds.wait_for(lambda cmds: [c for c in cmds if c.get("seq") == nxt["seq"]], what="again")[0]
    assert again["ticket"] == "A001"
    assert [c["ticket"] for c in hall.store.calls_after("s1", 0, 10)] == ["A001"]
    assert {t["ticket"]: t["status"] for t in hall.store.tickets("s1", DAY)} == {"A001": "called", "A002": "waiting"}

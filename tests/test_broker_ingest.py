"""The service's ingest against a real Mosquitto and the real counter firmware (simulated pins)."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest

from broker.ingest import Ingest, IngestSettings
from broker.store import Store
from common import periods
from protocol.codec import encode
from protocol.events import make_event
from provisioning.mosquitto_files import write_local_site
from tests.mosquitto import free_port
from tests.support import ROOT, DeviceProcess, Waiter, write_config

# Around today as the service sees it (the suite may run at a shifted date: HAILONG_NOW).
TODAY = periods.today(periods.zone(periods.DEFAULT_TZ))
WIDE = ((TODAY - timedelta(days=2)).isoformat(), (TODAY + timedelta(days=2)).isoformat())


def register_counters(store: Store, n: int) -> None:
    """The registry knows the `counters` fixture's devices: dev-i serves kien-thuy/i. Only known devices count."""
    for i in range(1, n + 1):
        store.register_device(f"dev-{i}", "kien-thuy", str(i))


def register_in_file(path, n: int) -> None:
    """register_counters, for a store file the service process will open."""
    with Store.open(path) as store:
        register_counters(store, n)


@pytest.fixture
def service(tmp_path, mosquitto):
    store = Store.open(tmp_path / "service" / "hailong.db")
    register_counters(store, 2)
    ingest = Ingest(store, IngestSettings(host=mosquitto.host, port=mosquitto.port, batch_wait_ms=5)).start()
    assert ingest.connected.wait(10)
    yield store, ingest
    ingest.stop()
    store.close()


@pytest.fixture
def counters(tmp_path, mosquitto):
    started = []

    def start(n, extra="[rating]\nrepeat_gap_s = 0\n"):
        for i in range(1, n + 1):
            cfg = write_config(tmp_path, mosquitto, device_id=f"dev-{i}", counter=str(i),
                               data_dir=tmp_path / f"data-{i}", extra=extra)
            dev = DeviceProcess(cfg)
            started.append(dev)
            dev.wait_ready()
            dev.wait("online", lambda v: v[-1] is True)
        return started

    yield start
    for dev in started:
        dev.close()


def all_acked(dev):
    n = len(dev.stored())
    dev.wait("acked", lambda v: sum(map(len, v)) >= n, timeout=30)


def test_presses_on_several_counters_are_counted_exactly(service, counters):
    store, ingest = service
    dev1, dev2 = counters(2)
    dev1.send("press 4", "press 4", "press 3", "press 1", "chord 2 3")
    dev2.send("press 2", "press 4")
    dev1.wait("stored", lambda v: len(v) == 6)
    dev2.wait("stored", lambda v: len(v) == 2)
    all_acked(dev1)
    all_acked(dev2)
    rows = {r["key"]: r for r in store.satisfaction("counter", *WIDE)["rows"]}
    c1, c2 = rows["kien-thuy/1"], rows["kien-thuy/2"]
    # dev-1: 4, 4, 3, 1 counted; the chord gives 2 (counted: first of the chord) and 3 (flagged).
    assert c1["counts"] == {"1": 1, "2": 1, "3": 1, "4": 2} and c1["ratings"] == 5 and c1["flagged"] == 1
    assert c1["satisfied"] == 3 and c1["rate"] == 0.6
    assert c2["counts"] == {"1": 0, "2": 1, "3": 0, "4": 1} and c2["ratings"] == 2
    assert ingest.metrics.ingested == 8 and ingest.metrics.rejected == 0


def test_live_next_gets_the_sites_next_ticket_number(service, counters):
    store, ingest = service
    (dev,) = counters(1, extra="")
    dev.send("press next")
    dev.wait("display", lambda v: v[-1] == "   1")
    dev.send("wait 0.2", "press next")
    dev.wait("display", lambda v: v[-1] == "   2")
    assert ingest.metrics.tickets == 2


def test_bad_messages_are_dead_lettered_and_the_sender_told(service, mosquitto):
    store, ingest = service
    acks = Waiter()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dev-x", protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: acks.append(json.loads(m.payload))
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        client.subscribe("hailong/v1/dev-x/ack", qos=1)
        assert subscribed.wait(5)
        common = dict(site="s", counter="1", ledger="0123456789abcdef", ts=1_700_000_000_000, clock_ok=True,
                      boot="b", mono=1.0)
        spoofed = make_event("rating", device="dev-y", seq=1, score=4, scale=4, **common)
        valid = make_event("rating", device="dev-x", seq=2, score=3, scale=4, **common)
        bad_score = dict(valid, seq=3, score=9)
        for payload in (b"{not json", b"x" * 70_000, encode(spoofed), json.dumps(bad_score).encode(), encode(valid)):
            client.publish("hailong/v1/dev-x/event", payload, qos=1).wait_for_publish(5)
        def named(items):
            return {s for a in items for s in a["seqs"]} | {r["seq"] for a in items for r in a.get("rejected", [])}

        acks.wait_for(lambda items: named(items) >= {1, 2, 3}, what="acks naming seqs 1, 2 and 3")
        got = acks.items
        rejected = {r["seq"]: r["reason"] for a in got for r in a.get("rejected", [])}
        assert set(rejected) == {1, 3} and "spoof" in rejected[1] and "score" in rejected[3]
        assert 2 in {s for a in got for s in a["seqs"]}
    finally:
        client.loop_stop()
        client.disconnect()
    letters = store.dead_letters()
    assert len(letters) == 4 and ingest.metrics.rejected == 4 and ingest.metrics.ingested == 1


def test_held_and_conflicting_events_are_acked_and_counted_apart(service, mosquitto):
    """Issue 10: a client nobody registered votes for a real counter; then it resends with another body."""
    store, ingest = service
    acks, cmds = Waiter(), Waiter()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="evil-1", protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: (acks if m.topic.endswith("/ack") else cmds).append(json.loads(m.payload))
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        client.subscribe([("hailong/v1/evil-1/ack", 1), ("hailong/v1/evil-1/cmd", 1)])
        assert subscribed.wait(5)
        now = time.time_ns() // 1_000_000
        client.publish("hailong/v1/evil-1/status", encode({"online": True, "fw": "1.0", "ledger": "0123456789abcdef",
                                                           "ts": now}), qos=1, retain=True).wait_for_publish(5)
        common = dict(device="evil-1", site="kien-thuy", counter="1", ledger="0123456789abcdef", ts=now,
                      clock_ok=True, boot="b", mono=1.0, officer=None, ticket=None)
        rating = make_event("rating", seq=1, score=1, scale=4, **common)
        call = make_event("call", seq=2, action="next", **common)
        for payload in (encode(rating), encode(call), encode(rating), encode(dict(rating, score=4))):
            client.publish("hailong/v1/evil-1/event", payload, qos=1).wait_for_publish(5)
        acks.wait_for(lambda items: sum(len(a["seqs"]) for a in items) >= 4, what="four acks")
    finally:
        client.loop_stop()
        client.disconnect()
    m = ingest.metrics
    assert (m.ingested, m.held, m.duplicates, m.conflicts, m.rejected) == (2, 2, 1, 1, 0)
    # A held NEXT gets no queue number (a ticket command would have come before the acks: same QoS 1 stream).
    assert m.tickets == 0 and cmds.items == []
    assert store.satisfaction("counter", *WIDE)["rows"] == []
    assert [(h["device"], h["events"]) for h in store.held_devices()] == [("evil-1", 2)]


def write_service_config(tmp_path, broker):
    cfg = tmp_path / "broker.toml"
    http_port = free_port()
    cfg.write_text(
        "[mqtt]\nembedded = false\n"
        f'host = "127.0.0.1"\nport = {broker.port}\nbatch_wait_ms = 5\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "service" / "hailong.db"}"\n'
        f"[http]\nport = {http_port}\n"
    )
    return cfg, http_port


def start_service(cfg, http_port):
    """The service as a real process; returns once /healthz says ingest and store are up."""
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "hailong.cli", "broker", "run", "--config", str(cfg)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ok = Waiter(dead=lambda items: proc.poll() is not None)

    def probe():
        while proc.poll() is None and not ok.items:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/healthz", timeout=1).status_code == 200:
                    ok.append(True)
            except httpx.HTTPError:
                threading.Event().wait(0.05)  # the service is still starting

    threading.Thread(target=probe, daemon=True).start()
    ok.wait_for(lambda items: items, timeout=30, what="service /healthz")
    return proc


def test_sigkill_of_the_service_mid_stream_loses_and_doubles_nothing(tmp_path, mosquitto, counters):
    cfg, http_port = write_service_config(tmp_path, mosquitto)
    register_in_file(tmp_path / "service" / "hailong.db", 1)
    svc = start_service(cfg, http_port)
    presses = 150
    try:
        (dev,) = counters(1)
        script = []
        for i in range(presses):
            script += [f"press {1 + i % 4}", "wait 0.02"]
        dev.send(*script)
        dev.wait("acked", lambda v: sum(map(len, v)) >= 20, timeout=30)
        svc.kill()  # in the middle of the stream: presses keep coming
        svc.wait(10)
        at_kill = len(dev.stored())
        assert at_kill < presses - 10, "the stream ended before the kill; make it longer"
        dev.wait("stored", lambda v: len(v) >= at_kill + 10, timeout=30)  # presses while the service is dead
        svc = start_service(cfg, http_port)
        dev.wait("stored", lambda v: len(v) == presses, timeout=60)
        all_acked(dev)
    finally:
        if svc.poll() is None:
            svc.terminate()
            assert svc.wait(15) == 0, svc.stderr.read()
    store = Store.open(tmp_path / "service" / "hailong.db")
    try:
        rows = store.satisfaction("counter", *WIDE)["rows"]
        assert [r["ratings"] for r in rows] == [presses]
        assert rows[0]["counts"] == {str(k): presses // 4 + (1 if k <= presses % 4 else 0) for k in range(1, 5)}
        assert len(store.events(limit=1000)) == presses
    finally:
        store.close()


def test_small_site_runs_on_the_embedded_broker(tmp_path):
    """`[mqtt] embedded = true`: the service brings its own MQTT broker (3.1.1); a counter delivers to it."""

    class Embedded:
        host, port = "127.0.0.1", free_port()

    passwd, acl = write_local_site(tmp_path / "mosquitto", {"hailong-service": "service-pw", "dev-1": "device-pw"})
    cfg = tmp_path / "broker.toml"
    http_port = free_port()
    cfg.write_text(
        f"[mqtt]\nembedded = true\nport = {Embedded.port}\nbatch_wait_ms = 5\n"
        f'password = "service-pw"\npasswd_file = "{passwd}"\nacl_file = "{acl}"\n'
        f'[store]\nurl = "sqlite:///{tmp_path / "service" / "hailong.db"}"\n'
        f"[http]\nport = {http_port}\n"
    )
    register_in_file(tmp_path / "service" / "hailong.db", 1)
    svc = start_service(cfg, http_port)
    dev = DeviceProcess(write_config(tmp_path, Embedded, mqtt='protocol = "3.1.1"\npassword = "device-pw"\n',
                                     counter="1", extra="[rating]\nrepeat_gap_s = 0\n"))
    try:
        dev.wait_ready()
        dev.wait("online", lambda v: v[-1] is True, timeout=20)
        dev.send("press 4", "press 2", "press next")
        dev.wait("stored", lambda v: len(v) == 3)
        all_acked(dev)
        dev.wait("display", lambda v: v[-1] == "   1")  # the service's ticket, through amqtt
    finally:
        dev.close()
        svc.terminate()
        assert svc.wait(15) == 0, svc.stderr.read()
    with Store.open(tmp_path / "service" / "hailong.db") as store:
        (row,) = store.satisfaction("counter", *WIDE)["rows"]
        assert row["counts"] == {"1": 0, "2": 1, "3": 0, "4": 1}


def test_broker_example_config_prints_every_section():
    r = subprocess.run([sys.executable, "-m", "hailong.cli", "broker", "example-config"],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0 and "[store]" in r.stdout and "embedded" in r.stdout


def test_a_badge_the_counter_does_not_know_is_resolved_by_the_registry(service, counters):
    store, ingest = service
    store.upsert_officer("o-12", "Trần Văn Bình", code="12", badge="0A1B2C3D4E")
    (dev,) = counters(1)
    dev.send("badge 0a1b2c3d4e")
    dev.wait("display", lambda v: " P12" in v)
    dev.send("wait 0.3", "press 4")
    dev.wait("stored", lambda v: any(e["type"] == "rating" for e in v))
    events = dev.stored()
    assert [(e["type"], e.get("method"), e["officer"]) for e in events] == [
        ("signin", "badge", None),        # the tap, recorded before anyone knew whose badge it was
        ("signin", "central", "o-12"),    # the service's answer
        ("rating", None, "o-12"),
    ]


def test_a_replayed_next_gets_no_ticket(tmp_path, mosquitto, counters):
    store = Store.open(tmp_path / "service" / "hailong.db")
    register_counters(store, 1)
    ingest = Ingest(store, IngestSettings(host=mosquitto.host, port=mosquitto.port, batch_wait_ms=5,
                                          ticket_fresh_s=0.5)).start()
    try:
        assert ingest.connected.wait(10)
        (dev,) = counters(1, extra="")
        mosquitto.stop()
        dev.wait("online", lambda v: v[-1] is False)
        dev.send("press next")
        dev.wait("display", lambda v: v[-1] == "L001")
        # Let the call grow older than ticket_fresh_s before the broker comes back: that is
        # what makes it a replay. Waiting on the clock is the point here, not synchronisation.
        threading.Event().wait(0.8)
        mosquitto.start()
        all_acked_after = dev.wait("acked", lambda v: sum(map(len, v)) >= 1, timeout=30)
        assert all_acked_after
        calls = [e for e in store.events(limit=10) if e["event"]["type"] == "call"]
        assert len(calls) == 1 and ingest.metrics.tickets == 0
        assert dev.of("display")[-1] == "L001"
    finally:
        ingest.stop()
        store.close()


# ----- what the service says back, byte for byte ------------------------------------------


class _Recorder:
    """Stands in for the paho client: what would have gone on the wire."""

    def __init__(self):
        self.sent = []

    def publish(self, topic, payload, qos=0, retain=False):
        self.sent.append((topic, payload, qos, retain))


class _Registry:
    """The two store calls the answers need: the site's next ticket and a badge's officer."""

    def __init__(self, officers):
        self.officers = officers
        self.tickets = []

    def next_tickets(self, site_days):
        first = 7 + len(self.tickets)
        self.tickets.extend(site_days)
        self.draws = getattr(self, "draws", 0) + 1
        return list(range(first, first + len(site_days)))

    def officer_by_badge(self, badge):
        return self.officers.get(badge)

    def counter_queues(self, site, counter):
        return []  # no queues: NEXT draws the site's daily number


def _answered(officers, outcomes, *, received_ms=1_700_000_000_000):
    from broker.ingest import _Msg
    from broker.store import Outcome

    store = _Registry(officers)
    ingest = Ingest(store, IngestSettings(), now_ms=lambda: received_ms)
    ingest._client = _Recorder()
    events = []
    for out in outcomes:
        m = _Msg(f"hailong/v1/{out['device']}/event", b"", 1, 1, False, received_ms, online=True)
        events.append((out["device"], "event", m))
    ingest._answer(events, [Outcome(**out) for out in outcomes])
    return ingest._client.sent, store


def _event(type_, seq, **fields):
    return {"type": type_, "seq": seq, "device": "dev-1", "site": "kien-thuy", "counter": "01", "officer": None,
            "clock_ok": True, "ts": 1_700_000_000_000 - 1000, **fields}


def test_acks_tickets_and_officers_go_out_as_the_protocol_spells_them():
    ledger = "0123456789abcdef"
    officers = {"0A1B2C3D4E": {"id": "o-12", "name": "Trần Văn Bình", "code": "12"},
                "FFFF": {"id": "officer-without-code", "name": "Lê Thị Hoa", "code": ""}}
    sent, store = _answered(officers, [
        dict(status="stored", device="dev-1", ledger=ledger, seq=41, reason=None,
             event=_event("call", 41, action="next")),
        dict(status="stored", device="dev-1", ledger=ledger, seq=42, reason=None,
             event=_event("signin", 42, badge="0A1B2C3D4E")),
        dict(status="rejected", device="dev-1", ledger=ledger, seq=43, reason="bad score", event=None),
        dict(status="duplicate", device="dev-1", ledger=ledger, seq=44, reason=None,
             event=_event("rating", 44)),
        dict(status="stored", device="dev-1", ledger=ledger, seq=45, reason=None,
             event=_event("signin", 45, badge="FFFF")),
    ])
    assert sent == [
        ("hailong/v1/dev-1/cmd", '{"cmd":"officer","officer":{"id":"o-12","name":"Trần Văn Bình","code":"12"}}'
         .encode(), 1, False),
        ("hailong/v1/dev-1/cmd", '{"cmd":"officer","officer":{"id":"officer-without-code","name":"Lê Thị Hoa",'
         '"code":"officer-"}}'.encode(), 1, False),
        ("hailong/v1/dev-1/cmd", b'{"cmd":"ticket","ticket":"7","seq":41}', 1, False),
        ("hailong/v1/dev-1/ack", b'{"ledger":"0123456789abcdef","seqs":[41,42,44,45],'
         b'"rejected":[{"seq":43,"reason":"bad score"}]}', 1, False),
    ]
    assert store.tickets == [("kien-thuy", "2023-11-15")]


def test_a_groups_live_nexts_draw_their_numbers_together_in_arrival_order():
    ledger = "0123456789abcdef"
    sent, store = _answered({}, [
        dict(status="stored", device="dev-1", ledger=ledger, seq=1, reason=None, event=_event("call", 1, action="next")),
        dict(status="stored", device="dev-2", ledger=ledger, seq=9, reason=None,
             event=_event("call", 9, action="next", device="dev-2")),
        dict(status="duplicate", device="dev-1", ledger=ledger, seq=2, reason=None,
             event=_event("call", 2, action="next")),  # a resend: its number went out with the first copy
        dict(status="stored", device="dev-1", ledger=ledger, seq=3, reason=None, event=_event("call", 3, action="next")),
    ])
    assert store.draws == 1 and store.tickets == [("kien-thuy", "2023-11-15")] * 3
    tickets = [(topic, payload) for topic, payload, _, _ in sent if b'"ticket"' in payload]
    assert tickets == [("hailong/v1/dev-1/cmd", b'{"cmd":"ticket","ticket":"7","seq":1}'),
                       ("hailong/v1/dev-2/cmd", b'{"cmd":"ticket","ticket":"8","seq":9}'),
                       ("hailong/v1/dev-1/cmd", b'{"cmd":"ticket","ticket":"9","seq":3}')]
    assert sent[-1][0].endswith("/ack")  # numbers before the acks, as before


def test_an_ack_without_rejections_leaves_the_key_out():
    sent, _ = _answered({}, [dict(status="stored", device="dev-2", ledger="fedcba9876543210", seq=1,
                                  reason=None, event=_event("rating", 1))])
    assert sent == [("hailong/v1/dev-2/ack", b'{"ledger":"fedcba9876543210","seqs":[1]}', 1, False)]


def test_an_officer_the_counter_could_not_show_is_not_sent_and_the_event_is_still_acked(caplog):
    ledger = "0123456789abcdef"
    officers = {"AB": {"id": "o-1", "name": "Phạm Văn Long", "code": "TOO-LONG-9"}}  # codes are 1..8 characters
    sent, _ = _answered(officers, [dict(status="stored", device="dev-1", ledger=ledger, seq=5, reason=None,
                                        event=_event("signin", 5, badge="AB"))])
    assert sent == [("hailong/v1/dev-1/ack", b'{"ledger":"0123456789abcdef","seqs":[5]}', 1, False)]
    assert "not sending officer command to dev-1" in caplog.text

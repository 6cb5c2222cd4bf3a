"""Two independent Mosquittos, real counter firmware processes and the service's ingest consuming both.

Counters list both brokers (`[mqtt] hosts`); one broker is stopped mid-stream while presses go on,
later started again and the other stopped. Every event the counters' ledgers stored must be in the
store exactly once, acks and ticket numbers must reach the counters on whichever broker they are,
and the service must keep them online through the other broker's late `offline` wills.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from broker.ingest import Ingest, IngestSettings
from broker.store import Store
from protocol.codec import encode
from protocol.messages import make_status
from tests.faultproxy import FaultProxy
from tests.mosquitto import Mosquitto
from tests.support import DeviceProcess, eventually

A, B = 0, 1  # the brokers' places in the service's and the counters' lists


@pytest.fixture
def brokers(tmp_path):
    pair = [Mosquitto(tmp_path / "mq-a").start(), Mosquitto(tmp_path / "mq-b").start()]
    yield pair
    for broker in pair:
        broker.stop()


@pytest.fixture
def service(tmp_path, brokers):
    store = Store.open(tmp_path / "service" / "hailong.db")
    for i in (1, 2):
        store.register_device(f"dev-{i}", "kien-thuy", str(i))
    hosts = tuple((b.host, b.port) for b in brokers)
    ingest = Ingest(store, IngestSettings(host=hosts[0][0], port=hosts[0][1], hosts=hosts, batch_wait_ms=5)).start()
    eventually(lambda: len(ingest._up) == 2, what="the service connected to both brokers")
    yield store, ingest
    ingest.stop()
    store.close()


@pytest.fixture
def counters(tmp_path):
    started = []

    def start(n: int, ports: list[int], mqtt_extra: str = ""):
        for i in range(1, n + 1):
            hosts = ", ".join(f'"127.0.0.1:{p}"' for p in ports)
            cfg = tmp_path / f"dev-{i}.toml"
            cfg.write_text(
                f'[device]\nid = "dev-{i}"\nsite = "kien-thuy"\ncounter = "{i}"\ndata_dir = "{tmp_path}/data-{i}"\n'
                f"[mqtt]\nhosts = [{hosts}]\nbackoff_min_s = 0.1\nbackoff_max_s = 0.5\n{mqtt_extra}"
                '[clock]\ntrust = "always"\n[rating]\nrepeat_gap_s = 0\n')
            dev = DeviceProcess(cfg)
            started.append(dev)
            dev.wait_ready()
            dev.wait("online", lambda v: v[-1] is True)
        return started

    yield start
    for dev in started:
        dev.close()


def plain_client(broker) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{broker.port}-{time.monotonic_ns()}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    return client


def retained_status(broker, device: str) -> dict | None:
    """What `broker` keeps as the device's retained status."""
    got, done = [], threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"peek-{time.monotonic_ns()}")
    client.on_message = lambda c, u, m: (got.append(m.payload), done.set())
    client.on_subscribe = lambda *a: None
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.subscribe(f"hailong/v1/{device}/status", qos=1)
        done.wait(5)
        return json.loads(got[0]) if got and got[0] else None
    finally:
        client.disconnect()
        client.loop_stop()


def drain(ingest, broker, n: int) -> None:
    """Wait until the service has worked through everything `broker` sent it so far.

    A retained probe shows the service's subscription there is in place (the broker replays retained
    messages as it takes a subscription); a live probe sent after it is queued behind that replay.
    """
    client = plain_client(broker)
    try:
        for i, retain in ((n, True), (n + 1, False)):
            status = encode(make_status(True, fw="probe", ledger="0123456789abcdef", ts=1))
            client.publish(f"hailong/v1/probe-{i}/status", status, qos=1, retain=retain).wait_for_publish(5)
            eventually(lambda: ingest.metrics.online.get(f"probe-{i}"), what=f"probe {i} through the service")
    finally:
        client.disconnect()
        client.loop_stop()


def stored_keys(dev) -> set:
    return {(e["device"], e["ledger"], e["seq"]) for e in dev.stored()}


def all_acked(dev, timeout: float = 40.0) -> None:
    n = len(dev.stored())
    dev.wait("acked", lambda v: sum(map(len, v)) >= n, timeout=timeout)


def store_keys(store_path) -> list:
    with sqlite3.connect(store_path) as db:
        return db.execute("SELECT device, ledger, seq FROM events").fetchall()


def presses(n: int) -> list[str]:
    return [c for i in range(n) for c in (f"press {1 + i % 4}", "wait 0.05")]


def test_counters_fail_over_between_two_brokers_and_every_event_counts_once(tmp_path, brokers, service, counters):
    store, ingest = service
    a, b = brokers
    devs = counters(2, [a.port, b.port])
    eventually(lambda: all(ingest.presence.online(f"dev-{i}") for i in (1, 2)), what="both counters online")
    assert all(ingest.presence.broker(f"dev-{i}") == A for i in (1, 2))

    for dev in devs:
        dev.send(*presses(40))
    devs[0].wait("stored", lambda v: len(v) >= 10)
    a.stop()  # mid-stream: presses go on while the counters find B
    for dev in devs:
        dev.wait("stored", lambda v: len(v) == 40, timeout=30)
        all_acked(dev)
    eventually(lambda: all(ingest.presence.broker(f"dev-{i}") == B for i in (1, 2)), what="both counters on B")
    assert (ingest.metrics.brokers, ingest.metrics.brokers_connected) == (2, 1)  # what /metrics alerts on

    # A comes back holding the wills it published for the counters as it went down.
    a.start()
    eventually(lambda: A in ingest._up, what="the service back on A")
    assert retained_status(a, "dev-1") == {"online": False}
    drain(ingest, a, 1)  # the service has heard A's replayed `offline`...
    for i in (1, 2):  # ...and the counters are still online, on B
        assert ingest.presence.online(f"dev-{i}") and ingest.presence.broker(f"dev-{i}") == B
        assert store.device(f"dev-{i}")["online"] is True

    b.stop()
    for dev in devs:
        dev.send(*presses(10))
    tickets = ingest.metrics.tickets
    for dev in devs:
        dev.wait("stored", lambda v: len(v) == 50, timeout=30)
        all_acked(dev)
    eventually(lambda: all(ingest.presence.broker(f"dev-{i}") == A for i in (1, 2)), what="both counters on A")
    devs[0].send("press next")
    shown = devs[0].wait("display", lambda v: v[-1].strip().isdigit(), timeout=15)[-1]
    assert ingest.metrics.tickets == tickets + 1  # the service's number, not the counter's local L-number
    all_acked(devs[0])

    expected = stored_keys(devs[0]) | stored_keys(devs[1])
    assert len(expected) == 50 + 51
    rows = store_keys(tmp_path / "service" / "hailong.db")
    assert len(rows) == len(set(rows)) and set(rows) == expected
    assert ingest.metrics.ingested == len(expected) and ingest.metrics.rejected == 0
    assert shown.strip() == "1"  # the site's first number of the day
    for i in (1, 2):
        assert store.device(f"dev-{i}")["online"] is True


def test_a_late_will_from_the_broker_a_counter_left_does_not_take_it_offline(brokers, service, counters):
    """The link to A dies without a word (a half-open connection): the counter moves to B, and A only
    notices 1.5 keepalives later, publishing the counter's `offline` will while it is online on B."""
    store, ingest = service
    a, b = brokers
    proxy = FaultProxy(a.port).start()
    try:
        (dev,) = counters(1, [proxy.port, b.port], mqtt_extra="keepalive_s = 5\n")
        eventually(lambda: ingest.presence.broker("dev-1") == A, what="dev-1 on A")
        proxy.stall()
        proxy.refuse()
        eventually(lambda: ingest.presence.broker("dev-1") == B, timeout=30, what="dev-1 on B")
        eventually(lambda: retained_status(a, "dev-1") == {"online": False}, timeout=30, what="A's will")
        drain(ingest, a, 1)
        assert ingest.presence.online("dev-1") and ingest.metrics.online["dev-1"] is True
        assert store.device("dev-1")["online"] is True
        tickets = ingest.metrics.tickets
        dev.send("press next")  # a queue number needs the service to know the counter is online
        dev.wait("display", lambda v: v[-1].strip().isdigit(), timeout=15)
        assert ingest.metrics.tickets == tickets + 1
    finally:
        proxy.close()

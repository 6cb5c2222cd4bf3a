"""Attacks over MQTT: one counter's credentials against every other counter's topics, with the
password file and ACL provisioning generates, on a real Mosquitto and on the embedded broker; and
replayed events from another device against the real ingest.
"""
from __future__ import annotations

import queue

import paho.mqtt.client as mqtt
import pytest

from broker.embedded import EmbeddedBroker
from broker.ingest import Ingest, IngestSettings
from broker.store import Store
from protocol.codec import encode
from protocol.events import make_event
from protocol.topics import KINDS, Topics
from provisioning.mosquitto_files import write_local_site
from tests.mosquitto import Mosquitto
from tests.test_broker_ingest import WIDE
from tests.test_embedded_broker import Client
from tests.test_fuzz_ingest import wait_until

PREFIX = "hailong/v1"
SERVICE = "hailong-service"
PASSWORDS = {SERVICE: "service-pw", "dev-a": "pw-a", "dev-b": "pw-b"}
QUIET_S = 0.3  # a second net after an in-order marker: long enough for a stray delivery to show


@pytest.fixture(params=["mosquitto", "embedded"])
def broker(request, tmp_path):
    """A broker enforcing the generated passwd and ACL: (port, kind)."""
    passwd, acl = write_local_site(tmp_path / "access", PASSWORDS, PREFIX, SERVICE)
    if request.param == "mosquitto":
        m = Mosquitto(tmp_path / "mosquitto", extra=f"password_file {passwd}\nacl_file {acl}\n", anonymous=False)
        m.start()
        yield m.port, "mosquitto"
        m.stop()
    else:
        with EmbeddedBroker(port=0, passwd_file=passwd, acl_file=acl) as b:
            yield b.port, "embedded"


class Login(Client):
    """An MQTT 3.1.1 client (both brokers speak it) logged in with one account's password."""

    def __init__(self, port: int, user: str, *, client_id: str | None = None, clean_session: bool = True):
        super().__init__(port, client_id or user, clean_session=clean_session, credentials=(user, PASSWORDS[user]))
        assert not self.connack["reason"].is_failure, self.connack

    def try_subscribe(self, *topics: str) -> None:
        """Subscribe however the broker answers: Mosquitto grants and filters at delivery, amqtt refuses."""
        for topic in topics:
            self.subscribed.clear()
            self.paho.subscribe(topic, qos=1)
            assert self.subscribed.wait(10)

    def receives_nothing(self, within: float) -> bool:
        try:
            m = self.messages.get(timeout=within)
        except queue.Empty:
            return True
        self.messages.put(m)
        return False

    def drained(self) -> list[tuple[str, bytes]]:
        out = []
        while True:
            try:
                m = self.messages.get_nowait()
            except queue.Empty:
                return out
            out.append((m.topic, m.payload))

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def until_marker(client: Login, topic: str) -> list[tuple[str, bytes]]:
    """Everything the client received up to and including the marker on `topic`."""
    got = []
    while True:
        m = client.next_message()
        got.append((m.topic, m.payload))
        if m.topic == topic and m.payload == b"marker":
            return got


def test_a_device_cannot_publish_on_any_topic_of_another_device(broker):
    port, _ = broker
    service, victim, attacker = Login(port, SERVICE), Login(port, "dev-b"), Login(port, "dev-a")
    try:
        service.subscribe(f"{PREFIX}/+/event")
        service.try_subscribe(f"{PREFIX}/+/status", f"{PREFIX}/+/telemetry", f"{PREFIX}/+/request")
        victim.try_subscribe(*(Topics("dev-b").topic(k) for k in ("ack", "cmd", "assignment")))
        b = Topics("dev-b")
        for kind in KINDS:
            attacker.publish(b.topic(kind), f"forged {kind}")  # 3.1.1 brokers PUBACK even when they deny
            # Its own commands and acks are the service's to write, not the device's.
            if kind in ("ack", "cmd", "assignment"):
                attacker.publish(Topics("dev-a").topic(kind), f"forged own {kind}")
        attacker.publish(f"{PREFIX}/dev-a/event", "marker")  # in order after the forgeries
        service.publish(b.ack, "marker")
        seen_by_service = until_marker(service, f"{PREFIX}/dev-a/event")
        seen_by_victim = until_marker(victim, b.ack)
        assert seen_by_service == [(f"{PREFIX}/dev-a/event", b"marker")]
        assert seen_by_victim == [(b.ack, b"marker")]
        assert service.receives_nothing(QUIET_S) and victim.receives_nothing(QUIET_S)
    finally:
        for c in (service, victim, attacker):
            c.close()


SPIED = [f"{PREFIX}/dev-b/ack", f"{PREFIX}/dev-b/cmd", f"{PREFIX}/dev-b/assignment", f"{PREFIX}/dev-b/event",
         f"{PREFIX}/+/ack", f"{PREFIX}/+/cmd", f"{PREFIX}/+/assignment", f"{PREFIX}/+/event", f"{PREFIX}/#", "#",
         "+/+/+/+", f"{PREFIX}/dev-b/#"]


def test_a_device_cannot_read_any_topic_of_another_device(broker):
    port, _ = broker
    service = Login(port, SERVICE)
    service.publish(f"{PREFIX}/dev-b/assignment", '{"officer": null}', retain=True)
    victim, attacker = Login(port, "dev-b"), Login(port, "dev-a")
    try:
        attacker.try_subscribe(*SPIED)
        attacker.subscribe(f"{PREFIX}/dev-a/ack")
        b = Topics("dev-b")
        for kind in ("ack", "cmd", "assignment"):
            service.publish(b.topic(kind), f"secret {kind}")
        for kind in ("event", "status", "telemetry"):
            victim.publish(b.topic(kind), f"secret {kind}")
        service.publish(f"{PREFIX}/dev-a/ack", "marker")
        assert until_marker(attacker, f"{PREFIX}/dev-a/ack") == [(f"{PREFIX}/dev-a/ack", b"marker")]
        assert attacker.receives_nothing(QUIET_S)
    finally:
        for c in (service, victim, attacker):
            c.close()


def test_a_device_cannot_take_over_another_devices_session_by_its_client_id(broker, request):
    """dev-a logs in with dev-b's client id while dev-b is away: it must not get dev-b's queued messages."""
    port, kind = broker
    service = Login(port, SERVICE)
    victim = Login(port, "dev-b", clean_session=False)
    victim.subscribe(f"{PREFIX}/dev-b/cmd")
    victim.close()
    observer = Login(port, "dev-a")
    observer.subscribe(f"{PREFIX}/dev-a/cmd")
    try:
        service.publish(f"{PREFIX}/dev-b/cmd", "queued for dev-b")
        # The broker handles the service's messages in order: once this marker is in, the
        # message above sits in dev-b's offline queue.
        service.publish(f"{PREFIX}/dev-a/cmd", "marker")
        assert until_marker(observer, f"{PREFIX}/dev-a/cmd") == [(f"{PREFIX}/dev-a/cmd", b"marker")]
        observer.close()
        if kind == "embedded":
            # amqtt would resume dev-b's session and replay its queue unasked: the embedded broker
            # refuses anyone who takes the client id of another account.
            refused = Client(port, "dev-b", clean_session=False, credentials=("dev-a", PASSWORDS["dev-a"]))
            assert refused.connack["reason"].is_failure
            refused.paho.loop_stop()
            # The real dev-b still gets in and gets its commands (what was queued before the attempt
            # may be gone: amqtt drops the session it resumed; commands are not votes, the device
            # re-sends what is unacked, and its assignment is retained).
            victim = Login(port, "dev-b", clean_session=False)
            victim.subscribe(f"{PREFIX}/dev-b/cmd")
            service.publish(f"{PREFIX}/dev-b/cmd", "marker")
            assert (f"{PREFIX}/dev-b/cmd", b"marker") in until_marker(victim, f"{PREFIX}/dev-b/cmd")
            victim.close()
            return
        thief = Login(port, "dev-a", client_id="dev-b", clean_session=False)
        try:
            service.publish(f"{PREFIX}/dev-b/cmd", "sent while the thief holds the session")
            assert thief.receives_nothing(1.0), thief.drained()
        finally:
            thief.close()
    finally:
        service.close()


# ----- replayed events against the real ingest --------------------------------------------------


@pytest.fixture
def ingest(tmp_path, mosquitto):
    store = Store.open(tmp_path / "service" / "hailong.db")
    store.register_device("dev-1", "s1", "1")
    store.register_device("dev-2", "s1", "2")
    ing = Ingest(store, IngestSettings(host=mosquitto.host, port=mosquitto.port, batch_wait_ms=5)).start()
    assert ing.connected.wait(10)
    yield store, ing
    ing.stop()
    store.close()


def rating(device: str, seq: int, score: int, site="s1", counter="1") -> dict:
    from common import clock

    return make_event("rating", device=device, site=site, counter=counter, ledger="0123456789abcdef", seq=seq,
                      ts=clock.now_ms(), clock_ok=True, boot="b", mono=float(seq), score=score, scale=4)


def test_replayed_events_from_another_device_are_never_counted_twice(ingest, mosquitto):
    store, ing = ingest
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="replayer", protocol=mqtt.MQTTv5)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        original = rating("dev-1", 1, 4)
        replays = [
            ("dev-1", encode(original)),                                # the same event again
            ("dev-2", encode(original)),                                # dev-1's payload under dev-2's topic
            ("dev-2", encode({**original, "device": "dev-2"})),        # same ledger/seq, device rewritten
            ("dev-1", encode({**original, "score": 1})),                # same identity, another score
        ]
        publish = [("dev-1", encode(original))] + replays
        for device, payload in publish:
            client.publish(f"{PREFIX}/{device}/event", payload, qos=1).wait_for_publish(5)
        m = ing.metrics
        wait_until(lambda: m.ingested + m.duplicates + m.conflicts + m.rejected >= len(publish), 15,
                   "the ingest to take every replay")
    finally:
        client.loop_stop()
        client.disconnect()
    m = ing.metrics
    assert (m.ingested, m.held, m.duplicates, m.conflicts, m.rejected) == (2, 1, 1, 1, 1)
    rows = {r["key"]: r for r in store.satisfaction("counter", *WIDE)["rows"]}
    assert rows["s1/1"]["ratings"] == 1 and rows["s1/1"]["counts"]["4"] == 1
    assert "s1/2" not in rows or rows["s1/2"]["ratings"] == 0
    assert [h["device"] for h in store.held_devices()] == ["dev-2"]  # held for an admin, not counted

"""The embedded amqtt broker, driven by paho clients configured like the counters'.

Tests named `test_amqtt_*` pin down amqtt 0.12.1 quirks rather than behaviour
we want. If one fails after an amqtt upgrade, the quirk changed: update the
module docstring of broker/embedded.py and the device code that copes with it.
"""
from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading

import paho.mqtt.client as mqtt
import pytest

from broker.embedded import EmbeddedBroker, EmbeddedBrokerError

TIMEOUT = 10
ACKS = "hailong/site1/counter-07/ack"
STATUS = "hailong/site1/counter-07/status"


class Client:
    """A paho 2.x MQTT 3.1.1 client whose callbacks can be waited on."""

    def __init__(
        self,
        port: int,
        client_id: str,
        *,
        clean_session: bool = False,
        keepalive: int = 60,
        will: tuple[str, str] | None = None,
        manual_ack: bool = False,
        protocol: int = mqtt.MQTTv311,
        credentials: tuple[str, str | None] | None = None,
    ) -> None:
        # The callbacks below close over these objects, never over self or the
        # paho client: paho closes its internal socketpair only in __del__, and
        # a reference cycle would leave that to the cycle collector, which
        # reports the sockets as leaked (ResourceWarning) before __del__ runs.
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connack: dict[str, object] = {}
        self.suback_codes: queue.Queue = queue.Queue()
        messages, connected, subscribed, connack = self.messages, self.connected, self.subscribed, self.connack
        suback_codes = self.suback_codes

        def on_subscribe(_client, _userdata, _mid, codes, _props) -> None:
            for code in codes:
                suback_codes.put(code)
            subscribed.set()

        def on_connect(_client, _userdata, flags, reason, _props) -> None:
            connack.update(session_present=flags.session_present, reason=reason)
            connected.set()

        self.paho = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            clean_session=clean_session if protocol != mqtt.MQTTv5 else None,
            # A dead connection must stay dead: the tests reconnect explicitly.
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        self.paho.on_connect = on_connect
        self.paho.on_subscribe = on_subscribe
        self.paho.on_message = lambda _c, _u, msg: messages.put(msg)
        if will:
            self.paho.will_set(*will, qos=1)
        if credentials:
            self.paho.username_pw_set(*credentials)
        self.paho.connect("127.0.0.1", port, keepalive)
        self.paho.loop_start()
        assert self.connected.wait(TIMEOUT), f"{client_id} got no CONNACK"

    @property
    def session_present(self) -> bool:
        return bool(self.connack["session_present"])

    def subscribe(self, topic: str) -> None:
        self.subscribed.clear()
        self.paho.subscribe(topic, qos=1)
        assert self.subscribed.wait(TIMEOUT)

    def publish(self, topic: str, payload: str, *, retain: bool = False) -> None:
        info = self.paho.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(TIMEOUT)  # returns once the broker's PUBACK is in
        assert info.is_published()

    def wait_suback_codes(self, n: int) -> list:
        return [self.suback_codes.get(timeout=TIMEOUT) for _ in range(n)]

    def next_message(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=TIMEOUT)

    def disconnect(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()

    def kill(self) -> None:
        """Drop the TCP connection without an MQTT DISCONNECT, as a crash would."""
        self.paho.socket().shutdown(socket.SHUT_RDWR)
        self.paho.loop_stop()


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture(autouse=True)
def no_leftover_threads():
    before = set(threading.enumerate())
    yield
    leftover = [t.name for t in threading.enumerate() if t not in before]
    assert not leftover, f"threads left running: {leftover}"


@pytest.fixture
def broker():
    b = EmbeddedBroker(port=0, allow_anonymous=True).start()
    try:
        yield b
    finally:
        b.stop()
        assert port_is_free(b.port)


def offline_device(port: int) -> tuple[Client, Client]:
    """A subscribed persistent device that has just died, and the central that saw its will.

    The will doubles as a barrier: once central has it, the broker has marked
    the device offline, so whatever central publishes next goes to the
    device's queue and not down the dead socket.
    """
    central = Client(port, "central", clean_session=True)
    central.subscribe(STATUS)
    device = Client(port, "counter-07", will=(STATUS, "offline"))
    device.subscribe(ACKS)
    device.kill()
    assert central.next_message().payload == b"offline"
    return central, device


def test_import_does_not_import_amqtt():
    code = "import sys, broker.embedded; assert 'amqtt' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_qos1_round_trip(broker):
    sub = Client(broker.port, "central")
    sub.subscribe("hailong/+/+/event")
    pub = Client(broker.port, "counter-07", clean_session=True)
    pub.publish("hailong/site1/counter-07/event", '{"button": 3}')
    msg = sub.next_message()
    assert (msg.topic, msg.payload, msg.qos) == ("hailong/site1/counter-07/event", b'{"button": 3}', 1)
    pub.disconnect()
    sub.disconnect()


def test_retained_message_reaches_late_subscriber(broker):
    pub = Client(broker.port, "central", clean_session=True)
    pub.publish("hailong/site1/config", "v2", retain=True)
    late = Client(broker.port, "counter-07", clean_session=True)
    late.subscribe("hailong/site1/config")
    msg = late.next_message()
    assert (msg.payload, msg.retain) == (b"v2", True)
    late.disconnect()
    pub.disconnect()


def test_persistent_session_gets_qos1_sent_while_offline(broker):
    central, _ = offline_device(broker.port)
    for n in range(3):
        central.publish(ACKS, f"ack-{n}")

    device = Client(broker.port, "counter-07")  # same id, clean_session=False, no resubscribe
    assert device.session_present
    acks = [device.next_message() for _ in range(3)]
    assert [m.payload for m in acks] == [b"ack-0", b"ack-1", b"ack-2"]
    assert {m.qos for m in acks} == {1}
    device.disconnect()
    central.disconnect()


def test_offline_queue_keeps_newest_max_queued():
    with EmbeddedBroker(port=0, max_queued=2, allow_anonymous=True) as broker:
        central, _ = offline_device(broker.port)
        for n in range(4):
            central.publish(ACKS, f"ack-{n}")
        device = Client(broker.port, "counter-07")
        assert [device.next_message().payload for _ in range(2)] == [b"ack-2", b"ack-3"]
        # The marker arriving next proves nothing older is still queued behind.
        central.publish(ACKS, "marker")
        assert device.next_message().payload == b"marker"
        device.disconnect()
        central.disconnect()


def test_will_published_when_socket_dies(broker):
    central = Client(broker.port, "central", clean_session=True)
    central.subscribe(STATUS)
    device = Client(broker.port, "counter-07", will=(STATUS, "offline"))
    device.kill()
    msg = central.next_message()
    assert (msg.topic, msg.payload) == (STATUS, b"offline")
    central.disconnect()


def test_silent_client_dropped_after_keepalive(broker):
    # Power or network loss leaves no FIN: only the keepalive can notice.
    # Stock amqtt 0.12.1 never does; EmbeddedBroker adds the check.
    central = Client(broker.port, "central", clean_session=True)
    central.subscribe(STATUS)
    device = Client(broker.port, "counter-07", keepalive=1, will=(STATUS, "offline"))
    device.paho.loop_stop()  # socket stays open, nothing more is sent
    assert central.next_message().payload == b"offline"
    device.paho.socket().close()
    central.disconnect()


def test_mqtt5_client_refused(broker):
    v5 = Client(broker.port, "counter-07", protocol=mqtt.MQTTv5)
    assert v5.connack["reason"] == "Unsupported protocol version"
    v5.paho.loop_stop()


def test_port_in_use_is_reported(broker):
    with pytest.raises(EmbeddedBrokerError, match=f"port {broker.port} on 127.0.0.1 is already in use"):
        EmbeddedBroker(port=broker.port, allow_anonymous=True).start()


def test_port_taken_by_another_program():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(EmbeddedBrokerError, match=f"port {port} on 127.0.0.1 is already in use"):
            EmbeddedBroker(port=port, allow_anonymous=True).start()


def test_stop_then_start_on_same_port():
    broker = EmbeddedBroker(port=0, allow_anonymous=True).start()
    port = broker.port
    broker.stop()
    broker.stop()  # idempotent
    assert port_is_free(port)

    with broker.start():
        assert broker.port == port
        Client(port, "counter-07", clean_session=True).disconnect()
    with EmbeddedBroker(port=port, allow_anonymous=True):  # a fresh instance can have it too
        Client(port, "counter-07", clean_session=True).disconnect()
    assert not broker.running


def test_amqtt_unacked_qos1_is_not_redelivered(broker):
    """KNOWN GAP in amqtt 0.12.1: MQTT-4.4.0-1 says a persistent session gets
    its unacknowledged QoS 1 messages again on reconnect. amqtt forgets a
    message whose PUBACK had not arrived when the connection died. So an ack
    that reaches a counter just as it crashes is lost; the device must resend
    events until their ack arrives, not rely on the broker for this.
    """
    central = Client(broker.port, "central", clean_session=True)
    central.subscribe(STATUS)
    device = Client(broker.port, "counter-07", will=(STATUS, "offline"), manual_ack=True)
    device.subscribe(ACKS)
    central.publish(ACKS, "ack-0")
    assert device.next_message().payload == b"ack-0"  # received, PUBACK withheld
    device.kill()
    assert central.next_message().payload == b"offline"

    device = Client(broker.port, "counter-07")
    assert device.session_present
    central.publish(ACKS, "marker")
    # A compliant broker (mosquitto) would resend ack-0 with DUP first.
    assert device.next_message().payload == b"marker"
    device.disconnect()
    central.disconnect()


def test_amqtt_flags_queued_messages_as_retained(broker):
    """amqtt 0.12.1 re-sends a persistent session's queued messages with
    RETAIN=1; device code must not read the flag as "stale state"."""
    central, _ = offline_device(broker.port)
    central.publish(ACKS, "ack-0")
    device = Client(broker.port, "counter-07")
    assert device.next_message().retain is True
    device.disconnect()
    central.disconnect()


def test_retained_messages_reach_only_the_clients_own_subscriptions(broker):
    """amqtt 0.12.1 sends every connecting client the retained messages that match
    *anyone's* subscription; ours sends only those of the client's own subscriptions."""
    central = Client(broker.port, "central", clean_session=True)
    central.publish("hailong/site1/config", "v2", retain=True)
    central.subscribe("hailong/site1/#")
    assert central.next_message().payload == b"v2"

    bystander = Client(broker.port, "counter-08", clean_session=True)  # subscribes to nothing of that
    assert_nothing_before_marker(bystander)
    bystander.disconnect()
    central.disconnect()


def assert_nothing_before_marker(client: Client) -> None:
    """The broker sends a connecting client its retained messages before it handles the client's
    first SUBSCRIBE; so once a marker published after that subscription arrives, anything it was
    going to be sent at connect is already in the queue."""
    client.subscribe("marker/" + client.paho._client_id.decode())
    client.publish("marker/" + client.paho._client_id.decode(), "m")
    msg = client.next_message()
    assert (msg.topic, msg.payload) == ("marker/" + client.paho._client_id.decode(), b"m")
    assert client.messages.empty()

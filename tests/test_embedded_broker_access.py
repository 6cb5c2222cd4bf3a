"""The embedded broker admits only provisioned accounts and confines each to its topics, from the same
password and ACL files provisioning writes for Mosquitto."""
from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest

from broker.embedded import EmbeddedBroker, EmbeddedBrokerError
from provisioning.credentials import hash_password
from provisioning.mosquitto_files import render_acl, render_passwd
from tests.test_embedded_broker import Client

PREFIX = "hailong/v1"
PASSWORDS = {"hailong-service": "service-secret", "dev-a": "secret-a", "dev-b": "secret-b"}


def write_files(folder, passwords=PASSWORDS):
    passwd, acl = folder / "passwd", folder / "acl"
    passwd.write_text(render_passwd([(u, hash_password(p)) for u, p in passwords.items()]))
    acl.write_text(render_acl([PREFIX]))
    return passwd, acl


@pytest.fixture
def files(tmp_path):
    return write_files(tmp_path)


@pytest.fixture
def broker(files):
    with EmbeddedBroker(port=0, passwd_file=files[0], acl_file=files[1]) as b:
        yield b


class Login(Client):
    """A test client that logs in (the base Client of the amqtt tests is anonymous)."""

    def __init__(self, port, user, password=None, *, client_id=None):
        self.user = user
        super().__init__(port, client_id or user, clean_session=True, credentials=(user, password or PASSWORDS[user]))


def refused(port: int, user: str | None, password: str | None) -> bool:
    """Whether the broker refuses this login at CONNECT (paho reports it in on_connect)."""
    try:
        c = Client(port, user or "anon", clean_session=True, credentials=None if user is None else (user, password))
    except AssertionError:
        return True  # no CONNACK at all
    reason = c.connack["reason"]
    c.disconnect()
    return reason.is_failure


def test_no_files_no_broker():
    with pytest.raises(EmbeddedBrokerError, match="password file and an ACL file"):
        EmbeddedBroker(port=0)


def test_unreadable_or_malformed_files_are_clear_errors(tmp_path, files):
    with pytest.raises(EmbeddedBrokerError, match="cannot read"):
        EmbeddedBroker(port=0, passwd_file=tmp_path / "missing", acl_file=files[1]).start()
    bad = tmp_path / "bad-acl"
    bad.write_text("topic read x\nallow everything\n")
    with pytest.raises(EmbeddedBrokerError, match="line 2"):
        EmbeddedBroker(port=0, passwd_file=files[0], acl_file=bad).start()


@pytest.mark.parametrize("user, password", [(None, None), ("dev-a", "wrong"), ("evil-1", "secret-a"),
                                            ("dev-a", None), ("dev-a", "")])
def test_anonymous_unknown_and_wrong_passwords_are_refused(broker, user, password):
    assert refused(broker.port, user, password)


def test_a_provisioned_device_logs_in(broker):
    assert not refused(broker.port, "dev-a", "secret-a")


def test_a_device_cannot_vote_as_another(broker):
    service = Login(broker.port, "hailong-service")
    service.subscribe(f"{PREFIX}/+/event")
    dev_a = Login(broker.port, "dev-a")
    dev_a.publish(f"{PREFIX}/dev-b/event", "forged")  # MQTT 3.1.1: PUBACK even when denied
    dev_a.publish(f"{PREFIX}/dev-a/event", "own")
    msg = service.next_message()
    assert (msg.topic, msg.payload) == (f"{PREFIX}/dev-a/event", b"own")
    assert service.messages.empty()
    for c in (service, dev_a):
        c.disconnect()


def test_a_device_cannot_read_another_devices_topics(broker):
    dev_a = Login(broker.port, "dev-a")
    for topic in (f"{PREFIX}/dev-b/ack", f"{PREFIX}/+/assignment", f"{PREFIX}/#", "#", f"{PREFIX}/dev-b/event"):
        result = dev_a.paho.subscribe(topic, qos=1)
        assert result[0] == mqtt.MQTT_ERR_SUCCESS
    granted = dev_a.wait_suback_codes(5)
    assert all(code.is_failure for code in granted), granted
    service = Login(broker.port, "hailong-service")
    service.publish(f"{PREFIX}/dev-b/ack", "for b only")
    assert_nothing_before_marker_as(dev_a, f"{PREFIX}/dev-a/cmd", service)
    for c in (service, dev_a):
        c.disconnect()


def test_retained_assignments_reach_only_their_own_device(broker):
    service = Login(broker.port, "hailong-service")
    service.publish(f"{PREFIX}/dev-a/assignment", '{"officer": "Nguyễn Văn An"}', retain=True)
    service.publish(f"{PREFIX}/dev-b/assignment", '{"officer": "Trần Thị Bình"}', retain=True)
    dev_b = Login(broker.port, "dev-b")
    dev_b.subscribe(f"{PREFIX}/dev-b/assignment")
    msg = dev_b.next_message()
    assert (msg.topic, msg.retain) == (f"{PREFIX}/dev-b/assignment", True)
    assert dev_b.messages.empty()
    # A client that subscribes to nothing gets nothing, whatever others subscribed to.
    dev_a = Login(broker.port, "dev-a")
    assert_nothing_before_marker_as(dev_a, f"{PREFIX}/dev-a/cmd", service)
    for c in (service, dev_a, dev_b):
        c.disconnect()


def test_a_device_added_later_logs_in_without_a_restart(tmp_path, broker, files):
    assert refused(broker.port, "dev-c", "secret-c")
    write_files(tmp_path, {**PASSWORDS, "dev-c": "secret-c"})
    assert not refused(broker.port, "dev-c", "secret-c")


def assert_nothing_before_marker_as(client: Login, own_topic: str, service: Login) -> None:
    """As assert_nothing_before_marker, for a device that may only read its own topics:
    the service sends the marker on one of them."""
    client.subscribe(own_topic)
    service.publish(own_topic, "marker")
    msg = client.next_message()
    assert (msg.topic, msg.payload) == (own_topic, b"marker")
    assert client.messages.empty()


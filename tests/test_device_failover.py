"""The counter over several brokers: the rotation policy (injected clock), its config, and the real uplink.

The end-to-end failover with counter processes and the service is in tests/test_failover_e2e.py.
"""
from __future__ import annotations

import threading

import pytest

from device.backoff import BrokerRotation, backoff_delay
from device.uplink import MqttUplink, UplinkSettings
from tests.mosquitto import Mosquitto, free_port

A, B, C = ("a", 1), ("b", 2), ("c", 3)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def rotation(*brokers, clock=None, **kw):
    return BrokerRotation(brokers, base=1.0, cap=8.0, stable_s=10.0, clock=clock or Clock(),
                          rand=lambda: 0.0, **kw)


def test_one_broker_is_the_single_broker_backoff():
    r = rotation(A)
    delays = [r.failed() for _ in range(6)]
    assert delays == [backoff_delay(n, base=1.0, cap=8.0, rand=lambda: 0.0) for n in range(6)]
    assert r.current == A
    r.connected()
    assert r.failed() == backoff_delay(0, base=1.0, cap=8.0, rand=lambda: 0.0)  # a lost connection starts over


def test_unreachable_broker_moves_on_at_once_and_backs_off_after_a_round():
    r = rotation(A, B, C)
    assert r.current == A
    assert (r.failed(), r.current) == (0.0, B)
    assert (r.failed(), r.current) == (0.0, C)
    assert (r.failed(), r.current) == (0.5, A)  # a whole round failed: wait, then the first again
    assert [r.failed() for _ in range(3)] == [0.0, 0.0, 1.0]  # the next round waits longer


def test_lost_connection_that_held_fails_over_without_waiting():
    clock = Clock()
    r = rotation(A, B, clock=clock)
    r.connected()
    clock.t += 60
    assert (r.failed(), r.current) == (0.0, B)
    r.connected()
    clock.t += 60
    assert (r.failed(), r.current) == (0.0, A)  # and back, when B goes away in turn


def test_acceptance_resets_the_growing_wait():
    clock = Clock()
    r = rotation(A, B, clock=clock)
    for _ in range(6):
        r.failed()
    assert r.failed() == 0.0 and r.failed() == 4.0
    r.connected()
    clock.t += 60
    assert r.failed() == 0.0 and r.failed() == 0.5


def test_brokers_that_accept_and_drop_at_once_cannot_make_a_tight_loop():
    clock = Clock()
    r = rotation(A, B, clock=clock)
    waits = []
    for _ in range(6):
        r.connected()
        clock.t += 0.1  # dropped right after CONNACK, e.g. an ACL or a broker in trouble
        waits.append(r.failed())
    assert waits == [0.0, 0.5, 0.0, 0.5, 0.0, 0.5]  # a wait every round, never two moves without one


def test_rotation_needs_a_broker():
    with pytest.raises(ValueError):
        BrokerRotation(())


# --- the real uplink against two Mosquittos -------------------------------------------------------

@pytest.fixture
def two_brokers(tmp_path):
    a = Mosquitto(tmp_path / "a").start()
    b = Mosquitto(tmp_path / "b").start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def test_uplink_fails_over_and_back_and_subscribes_on_each(two_brokers):
    import paho.mqtt.client as mqtt

    a, b = two_brokers
    ups, downs, messages = threading.Semaphore(0), [], []
    got = threading.Event()
    uplink = MqttUplink(
        UplinkSettings(client_id="dev-1", host=a.host, port=a.port, hosts=((a.host, a.port), (b.host, b.port)),
                       backoff_min_s=0.1, backoff_max_s=0.5, keepalive_s=5,
                       will=("hailong/v1/dev-1/status", b'{"online":false}'),
                       subscriptions=(("hailong/v1/dev-1/cmd", 1),)),
        on_connect=ups.release, on_disconnect=downs.append,
        on_message=lambda topic, payload: (messages.append(payload), got.set()),
    )
    uplink.start()
    try:
        assert ups.acquire(timeout=10) and uplink.broker == (a.host, a.port)
        a.stop()
        assert ups.acquire(timeout=10) and uplink.broker == (b.host, b.port)
        assert downs  # the runtime heard of the loss: its outbox resends from the oldest unacked event

        def send_cmd(broker, payload):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="svc")
            c.connect(broker.host, broker.port)
            c.loop_start()
            c.publish("hailong/v1/dev-1/cmd", payload, qos=1).wait_for_publish(5)
            c.disconnect()
            c.loop_stop()

        send_cmd(b, b"on-b")  # subscribed on B, which it never saw before
        assert got.wait(10) and messages == [b"on-b"]
        a.start()
        b.stop()
        assert ups.acquire(timeout=10) and uplink.broker == (a.host, a.port)
        got.clear()
        send_cmd(a, b"on-a")
        assert got.wait(10) and messages[-1] == b"on-a"
    finally:
        uplink.stop()


def test_uplink_with_no_broker_up_keeps_trying_every_one(tmp_path):
    dead = [("127.0.0.1", free_port()), ("127.0.0.1", free_port())]
    late = Mosquitto(tmp_path / "late", port=dead[1][1])
    up = threading.Event()
    uplink = MqttUplink(UplinkSettings(client_id="dev-1", host=dead[0][0], port=dead[0][1], hosts=tuple(dead),
                                       backoff_min_s=0.1, backoff_max_s=0.3),
                        on_connect=up.set)
    uplink.start()
    try:
        late.start()  # the second broker comes up while the counter cycles through both
        assert up.wait(15) and uplink.broker == dead[1]
    finally:
        uplink.stop()
        late.stop()


# --- the config -------------------------------------------------------------------------------------

def device_config(mqtt: dict):
    from device.config import config_from_dict

    return config_from_dict({"device": {"id": "dev-1", "site": "s", "counter": "1", "data_dir": "/tmp/x"},
                             "mqtt": mqtt})


def test_config_hosts_become_the_uplinks_brokers():
    from device.runtime import uplink_settings
    from protocol.topics import Topics

    cfg = device_config({"hosts": ["mq-a.example:1883", "[fd00::2]:8883"]})
    assert cfg.mqtt.brokers == (("mq-a.example", 1883), ("fd00::2", 8883))
    assert uplink_settings(cfg, Topics("dev-1")).brokers == (("mq-a.example", 1883), ("fd00::2", 8883))
    single = device_config({"host": "mq.example"})
    assert uplink_settings(single, Topics("dev-1")).brokers == (("mq.example", 1883),)


@pytest.mark.parametrize("mqtt, key, reason", [
    ({"hosts": ["a:1883"], "host": "b"}, "mqtt.host", "set either mqtt.host or mqtt.hosts"),
    ({"hosts": ["a:1883"], "port": 1883}, "mqtt.port", "set either mqtt.port or mqtt.hosts"),
    ({"hosts": []}, "mqtt.hosts", "must list at least one broker"),
    ({"hosts": ["a:1883", "a:1883"]}, "mqtt.hosts", "more than once: a:1883"),
    ({"hosts": ["a"]}, "mqtt.hosts", 'must be a list of "host:port" broker addresses'),
    ({"hosts": ["a:0"]}, "mqtt.hosts", "got ['a:0']"),
    ({"hosts": ["::1:1883"]}, "mqtt.hosts", "an IPv6 host in brackets"),
    ({"hosts": "a:1883"}, "mqtt.hosts", "got 'a:1883'"),
    ({}, "mqtt.host", "required key is missing (or list brokers in mqtt.hosts)"),
])
def test_config_rejects_a_bad_broker_list(mqtt, key, reason):
    from device.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        device_config(mqtt)
    problems = dict(e.value.problems)
    assert reason in problems[key], problems


# --- provisioning: the technician lists the site's brokers once ---------------------------------------

def test_a_site_with_several_brokers_gets_bundles_listing_them_all(tmp_path, capsys):
    from device.config import load_config
    from provisioning.cli import main

    inv = tmp_path / "inv"
    assert main(["--inventory", str(inv), "site", "add", "hp", "--broker-host", "10.20.0.2",
                 "--also-broker", "10.20.0.3:1883", "--also-broker", "[fd00::4]:8883"]) == 0
    assert "10.20.0.2:1883 10.20.0.3:1883 [fd00::4]:8883" in capsys.readouterr().out
    assert main(["--inventory", str(inv), "device", "add", "--site", "hp", "--counter", "1"]) == 0
    (bundle,) = (inv / "bundles").iterdir()
    cfg = load_config(bundle / "device.toml")
    assert cfg.mqtt.brokers == (("10.20.0.2", 1883), ("10.20.0.3", 1883), ("fd00::4", 8883))
    assert cfg.mqtt.host is None and cfg.mqtt.password == (bundle / "mqtt-password").read_text().strip()


def test_a_site_with_one_broker_keeps_host_and_port(tmp_path):
    from device.config import load_config
    from provisioning.cli import main

    inv = tmp_path / "inv"
    assert main(["--inventory", str(inv), "site", "add", "hp", "--broker-host", "10.20.0.2", "--port", "8883"]) == 0
    assert main(["--inventory", str(inv), "device", "add", "--site", "hp", "--counter", "1"]) == 0
    (bundle,) = (inv / "bundles").iterdir()
    cfg = load_config(bundle / "device.toml")
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.hosts) == ("10.20.0.2", 8883, None)


def test_a_bad_further_broker_is_refused(tmp_path, capsys):
    from provisioning.cli import main

    inv = tmp_path / "inv"
    assert main(["--inventory", str(inv), "site", "add", "hp", "--broker-host", "h", "--also-broker", "h2"]) != 0
    assert "--also-broker 'h2': expected HOST:PORT" in capsys.readouterr().err


def test_the_doctor_checks_every_broker_and_warns_when_one_is_down(mosquitto):
    from device.doctor import FAIL, PASS, WARN, check_broker

    dead = free_port()
    both = device_config({"hosts": [f"127.0.0.1:{mosquitto.port}", f"127.0.0.1:{dead}"]})
    result, detail = check_broker(both, timeout=5)
    assert result == WARN and f"127.0.0.1:{mosquitto.port} accepted" in detail and f"127.0.0.1:{dead}" in detail
    assert check_broker(device_config({"hosts": [f"127.0.0.1:{mosquitto.port}"]}))[0] == PASS
    assert check_broker(device_config({"hosts": [f"127.0.0.1:{dead}", f"127.0.0.1:{free_port()}"]}))[0] == FAIL

"""The service over several brokers, without a network: where a device is, and where each answer goes.

The same with real Mosquittos and counter processes is tests/test_failover_e2e.py.
"""
from __future__ import annotations

from broker.ingest import Ingest, IngestSettings, _Msg
from broker.presence import Presence
from broker.store import Store
from protocol.codec import encode
from protocol.events import make_event
from protocol.messages import make_status

A, B = 0, 1


def test_a_late_will_from_the_broker_left_is_ignored():
    p = Presence()
    assert p.status("dev-1", A, True, 100, replayed=False)
    assert p.status("dev-1", B, True, 200, replayed=False)  # the counter lost A and connected to B
    assert not p.status("dev-1", A, False, None, replayed=False)  # A's will, 1.5 keepalives later
    assert p.online("dev-1") and p.broker("dev-1") == B
    assert not p.status("dev-1", A, False, None, replayed=True)  # and again, retained, when A is re-subscribed
    assert p.online("dev-1")


def test_a_stale_retained_online_from_a_restarted_broker_is_ignored():
    p = Presence()
    p.status("dev-1", B, True, 200, replayed=False)
    assert not p.status("dev-1", A, True, 100, replayed=True)  # kept by A from before the counter moved
    assert p.broker("dev-1") == B
    assert p.status("dev-1", B, False, None, replayed=False)  # the counter leaves B: offline everywhere
    assert not p.online("dev-1") and p.broker("dev-1") == B


def test_a_live_online_wins_whatever_its_clock_says():
    p = Presence()
    p.status("dev-1", B, True, 5_000, replayed=False)
    # Rebooted with a clock that runs behind (no NTP yet), and connected to A first.
    assert p.status("dev-1", A, True, 1_000, replayed=False)
    assert p.broker("dev-1") == A
    assert not p.status("dev-1", B, False, None, replayed=False)  # B's will for the connection before the reboot
    assert p.online("dev-1")


def test_replayed_statuses_after_a_service_restart_place_the_counter_by_its_newest_online():
    for order in ([(A, True, 100), (B, True, 200)], [(B, True, 200), (A, True, 100)]):
        p = Presence()
        for broker, online, ts in order:
            p.status("dev-1", broker, online, ts, replayed=True)
        assert p.broker("dev-1") == B, order
    p = Presence()
    p.status("dev-1", B, True, 200, replayed=True)
    p.status("dev-1", A, False, None, replayed=True)  # A's will from when the counter left it
    assert p.online("dev-1") and p.broker("dev-1") == B


def test_a_single_broker_takes_every_status_as_it_comes():
    p = Presence()
    assert p.status("dev-1", A, True, 200, replayed=False)
    assert p.status("dev-1", A, True, 100, replayed=True)
    assert p.status("dev-1", A, False, None, replayed=False)
    assert not p.online("dev-1")
    assert p.status("dev-1", A, True, 50, replayed=False) and p.online("dev-1")


def test_an_offline_device_is_reached_where_it_was_last_heard():
    p = Presence()
    assert p.broker("dev-1") is None
    p.heard("dev-1", B)
    assert p.broker("dev-1") == B and not p.online("dev-1")


class _Client:
    """Stands in for one broker's paho client: what would have gone on the wire to that broker."""

    def __init__(self):
        self.sent, self.acked = [], []

    def publish(self, topic, payload, qos=0, retain=False):
        self.sent.append((topic, retain))

    def ack(self, mid, qos):
        self.acked.append(mid)


def test_pubacks_acks_and_commands_go_to_the_right_broker(tmp_path):
    store = Store.open(tmp_path / "hailong.db")
    store.register_device("dev-1", "kien-thuy", "1")
    hosts = (("127.0.0.1", 1), ("127.0.0.1", 2))
    ingest = Ingest(store, IngestSettings(hosts=hosts), now_ms=lambda: 1_700_000_000_000)
    ingest._clients = [_Client(), _Client()]
    status = encode(make_status(True, fw="1", ledger="0123456789abcdef", ts=1_700_000_000_000))
    event = encode(make_event("rating", device="dev-1", seq=1, score=4, scale=4, site="kien-thuy", counter="1",
                              ledger="0123456789abcdef", ts=1_699_999_999_000, clock_ok=True, boot="b", mono=1.0))
    try:
        ingest._process([_Msg("hailong/v1/dev-1/status", status, 7, 1, False, 1_700_000_000_000, link=B),
                         _Msg("hailong/v1/dev-1/event", event, 8, 1, False, 1_700_000_000_000, link=B)])
        a, b = ingest._clients
        assert a.acked == [] and sorted(b.acked) == [7, 8]  # a PUBACK means nothing to the other broker
        assert a.sent == [] and b.sent == [("hailong/v1/dev-1/ack", False)]
        ingest._command("dev-1", "display", ticket="0042")
        assert a.sent == [] and b.sent[-1] == ("hailong/v1/dev-1/cmd", False)
        ingest.publish("dev-1", "assignment", {"officer": None}, retain=True)
        assert a.sent == [("hailong/v1/dev-1/assignment", True)] == b.sent[-1:]
        ingest._command("dev-9", "display", ticket="0042")  # never heard of: wherever it may connect
        assert a.sent[-1] == b.sent[-1] == ("hailong/v1/dev-9/cmd", False)
        assert store.device("dev-1")["online"] is True
    finally:
        store.close()


# --- the service's config -----------------------------------------------------------------------------

def service_config(mqtt: dict):
    from broker.config import config_from_dict

    return config_from_dict({"mqtt": {"embedded": False, **mqtt}, "store": {"url": "sqlite:////tmp/h.db"}})


def test_service_hosts_become_the_ingest_s_brokers():
    from broker.service import ingest_settings

    cfg = service_config({"hosts": ["10.20.0.2:1883", "10.20.0.3:1884"]})
    assert ingest_settings(cfg).brokers == (("10.20.0.2", 1883), ("10.20.0.3", 1884))
    assert ingest_settings(service_config({})).brokers == (("127.0.0.1", 1883),)


def test_service_hosts_do_not_combine_with_host_port_or_the_embedded_broker():
    import pytest

    from broker.config import ConfigError

    with pytest.raises(ConfigError) as e:
        service_config({"hosts": ["a:1"], "host": "b", "port": 2})
    assert {k for k, _ in e.value.problems} == {"mqtt.host", "mqtt.port"}
    with pytest.raises(ConfigError) as e:
        service_config({"embedded": True, "hosts": ["a:1"], "passwd_file": __file__, "acl_file": __file__,
                        "password": "x"})
    assert dict(e.value.problems)["mqtt.hosts"].startswith("the embedded broker is a single broker")

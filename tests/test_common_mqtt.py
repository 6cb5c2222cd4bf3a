"""common.mqtt: what the one client factory sets on paho, and what the uplink, the ingest and the doctor ask of it."""
from __future__ import annotations

import ssl
import subprocess
import sys

import paho.mqtt.client as mqtt
import pytest

from common.mqtt import ClientSettings, connect_args, make_client
from tests.support import ROOT


def test_a_v5_client_with_a_persistent_session():
    s = ClientSettings(client_id="dev-1", host="mq.example", port=8883, keepalive_s=30, session_expiry_s=3600)
    client = make_client(s)
    assert client.protocol == mqtt.MQTTv5
    assert client._client_id == b"dev-1"
    assert client._callback_api_version == mqtt.CallbackAPIVersion.VERSION2
    args = connect_args(s)
    props = args.pop("properties")
    assert args == {"host": "mq.example", "port": 8883, "keepalive": 30, "clean_start": False}
    assert props.SessionExpiryInterval == 3600


def test_a_v5_client_with_a_clean_session_leaves_paho_s_defaults():
    s = ClientSettings(client_id="dev-1-doctor", host="h", keepalive_s=10)
    client = make_client(s)
    assert client._clean_start == mqtt.MQTT_CLEAN_START_FIRST_ONLY
    assert connect_args(s) == {"host": "h", "port": 1883, "keepalive": 10}


def test_a_3_1_1_client_keeps_its_session_only_when_asked():
    kept = make_client(ClientSettings(client_id="svc", host="h", protocol="3.1.1", session_expiry_s=60))
    assert kept.protocol == mqtt.MQTTv311 and kept._clean_session is False
    assert connect_args(ClientSettings(client_id="svc", host="h", protocol="3.1.1", session_expiry_s=60)) == {
        "host": "h", "port": 1883, "keepalive": 60}  # 3.1.1 has no session properties
    clean = make_client(ClientSettings(client_id="svc", host="h", protocol="3.1.1"))
    assert clean._clean_session is True


def test_an_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="unknown MQTT protocol"):
        make_client(ClientSettings(client_id="x", host="h", protocol="4"))


def test_defaults_are_paho_s_own():
    client = make_client(ClientSettings(client_id="x", host="h"))
    plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="x", protocol=mqtt.MQTTv5)
    for attr in ("_max_inflight_messages", "_max_queued_messages", "_connect_timeout", "_reconnect_min_delay",
                 "_reconnect_max_delay", "_manual_ack", "_username", "_password", "_will", "_ssl_context"):
        assert getattr(client, attr) == getattr(plain, attr), attr


def test_credentials_limits_and_acks():
    client = make_client(ClientSettings(
        client_id="svc", host="h", username="hailong-service", password="pw", max_inflight=1000,
        connect_timeout_s=7.5, reconnect_delay_s=(0.5, 5), manual_ack=True))
    assert client.username == "hailong-service" and client.password == "pw"
    assert client.max_inflight_messages == 1000 and client.max_queued_messages == 0
    assert client.connect_timeout == 7.5
    assert (client._reconnect_min_delay, client._reconnect_max_delay) == (0.5, 5)
    assert client._manual_ack is True


def test_an_empty_username_is_still_sent_but_none_is_not():
    assert make_client(ClientSettings(client_id="x", host="h", username="", password=None)).username == ""
    assert make_client(ClientSettings(client_id="x", host="h", username=None, password="pw")).username is None


def test_the_will_is_retained_with_qos_1():
    client = make_client(ClientSettings(client_id="dev-1", host="h", will=("hailong/v1/dev-1/status", b'{"online":false}')))
    assert client._will is True
    assert (client._will_topic, client._will_payload) == (b"hailong/v1/dev-1/status", b'{"online":false}')
    assert (client._will_qos, client._will_retain) == (1, True)


def test_tls_passes_the_files_and_requires_a_certificate(monkeypatch):
    seen = {}
    monkeypatch.setattr(mqtt.Client, "tls_set", lambda self, **kw: seen.update(kw))
    make_client(ClientSettings(client_id="dev-1", host="h", tls=True, ca_file="/etc/hailong/ca.crt",
                               cert_file="/etc/hailong/dev.crt", key_file="/etc/hailong/dev.key"))
    assert seen == {"ca_certs": "/etc/hailong/ca.crt", "certfile": "/etc/hailong/dev.crt",
                    "keyfile": "/etc/hailong/dev.key", "cert_reqs": ssl.CERT_REQUIRED}


def test_tls_without_a_ca_file_trusts_the_system_and_checks_the_host_name():
    client = make_client(ClientSettings(client_id="dev-1", host="h", tls=True))
    assert client._ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert client._ssl_context.check_hostname is True
    assert make_client(ClientSettings(client_id="dev-1", host="h"))._ssl_context is None


# ----- what each caller asks for ------------------------------------------------------------


def test_the_counter_s_uplink_keeps_its_session_says_its_will_and_writes_from_one_thread():
    from device.uplink import MqttUplink, UplinkSettings

    uplink = MqttUplink(UplinkSettings(
        client_id="dev-1", host="h", port=1884, username="dev-1", password="pw", keepalive_s=45,
        session_expiry_s=600, connect_timeout_s=10, max_inflight=7, will=("t/status", b"{}")))
    c = uplink._client
    assert c._client_id == b"dev-1" and c.protocol == mqtt.MQTTv5 and not c._manual_ack
    assert c.username == "dev-1" and c.password == "pw"
    assert c.max_inflight_messages == 7 and c.connect_timeout == 10
    assert c._will_topic == b"t/status" and c._will_retain is True
    assert c.on_socket_register_write is not None and c.on_message == uplink._on_message
    args = connect_args(uplink._client_settings())
    assert args["keepalive"] == 45 and args["clean_start"] is False
    assert args["properties"].SessionExpiryInterval == 600
    assert MqttUplink(UplinkSettings(client_id="dev-1", host="h", protocol="3.1.1"))._client._clean_session is False


def test_the_service_s_ingest_acks_by_hand_and_keeps_its_session():
    from broker.ingest import Ingest, IngestSettings

    for protocol in ("5", "3.1.1"):
        ingest = Ingest(None, IngestSettings(protocol=protocol, username="", password="x", session_expiry_s=99))
        c = ingest._client
        assert c._manual_ack is True and c.max_inflight_messages == 1000
        assert (c._reconnect_min_delay, c._reconnect_max_delay) == (0.5, 5)
        assert c.username is None  # an empty username means no credentials for the service
        assert c._client_id == b"hailong-service" and c._will is False
        args = connect_args(ingest._client_settings())
        assert args["keepalive"] == 30
        if protocol == "5":
            assert args["clean_start"] is False and args["properties"].SessionExpiryInterval == 99
        else:
            assert c._clean_session is False and "clean_start" not in args


def test_the_doctor_connects_with_a_clean_session_of_its_own(monkeypatch, tmp_path):
    import common.mqtt
    from device.config import config_from_dict
    from device.doctor import FAIL, check_broker

    made = []
    real = common.mqtt.make_client
    monkeypatch.setattr(common.mqtt, "make_client", lambda s: made.append(s) or real(s))
    cfg = config_from_dict({"device": {"id": "dev-1", "site": "s", "counter": "1", "data_dir": str(tmp_path)},
                            "mqtt": {"host": "127.0.0.1", "port": 1, "password": "pw"}})
    assert check_broker(cfg)[0] == FAIL  # nothing listens on port 1
    (s,) = made
    assert s.client_id == "dev-1-doctor" and s.session_expiry_s is None and s.will is None
    assert s.keepalive_s == 10 and (s.username, s.password) == ("dev-1", "pw")


def test_importing_common_mqtt_does_not_import_paho():
    code = "import sys, common.mqtt; print([m for m in sys.modules if m.startswith('paho')])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert r.stdout.strip() == "[]"

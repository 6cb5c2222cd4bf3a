"""deploy/mosquitto.conf and mosquitto.acl on a real Mosquitto, and the service's systemd unit.

The production config is copied with only its paths and ports rewritten, so what is
tested is what gets installed.
"""
from __future__ import annotations

import configparser
import os
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from protocol.codec import MAX_PAYLOAD
from tests.mosquitto import find_mosquitto, free_port, wait_port

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
CONF = DEPLOY / "mosquitto.conf"
ACL = DEPLOY / "mosquitto.acl"
UNIT = DEPLOY / "hailong-broker.service"

SERVICE = "hailong-service"
PASSWORDS = {"hl-a": "pw-a", "hl-b": "pw-b", SERVICE: "pw-service"}
WAIT = 10  # seconds for anything that should happen; a failure, not a hang, if it does not


def settings(text: str) -> list[tuple[str, str]]:
    """(option, value) for each setting line of a mosquitto.conf, in order."""
    return [tuple(line.split(None, 1)) for line in text.splitlines() if line and not line.startswith("#")]


def test_conf_key_settings():
    conf = settings(CONF.read_text(encoding="utf-8"))
    options = dict(conf)
    expected = {
        "per_listener_settings": "false",
        "allow_anonymous": "false",
        "password_file": "/etc/mosquitto/hailong/passwd",
        "acl_file": "/etc/mosquitto/hailong/acl",
        "persistence": "true",
        "max_queued_messages": "100000",
        "set_tcp_nodelay": "true",
        "persistent_client_expiration": "14d",
        "tls_version": "tlsv1.2",
    }
    assert {key: options.get(key) for key in expected} == expected
    assert [value for key, value in conf if key == "listener"] == ["1883 127.0.0.1", "8883"]
    assert int(options["max_packet_size"]) > MAX_PAYLOAD  # the limit counts headers and topic too
    for key in ("persistence_location", "autosave_interval", "max_inflight_messages", "log_dest"):
        assert key in options, key


# --- a real Mosquitto with the deploy config -------------------------------------------------

@dataclass
class Broker:
    plain_port: int
    tls_port: int
    ca: Path


def _openssl(workdir: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=workdir, check=True, capture_output=True, timeout=60)


def make_certs(certs: Path) -> None:
    """A CA, and a server certificate from it for 127.0.0.1."""
    certs.mkdir()
    (certs / "openssl.cnf").write_text(
        "[req]\ndistinguished_name = dn\n[dn]\n"
        "[ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        "[server]\nbasicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-config", "openssl.cnf"]
    _openssl(certs, "req", "-x509", *ec, "-extensions", "ca", "-days", "2",
             "-subj", "/CN=hailong test CA", "-keyout", "ca.key", "-out", "ca.crt")
    _openssl(certs, "req", *ec, "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    _openssl(certs, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "openssl.cnf", "-extensions", "server", "-out", "server.crt")


def rewrite(text: str, paths: dict[str, Path], ports: dict[int, int]) -> str:
    """The deploy config with its system paths and listener ports replaced, nothing else."""
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            for old, new in paths.items():
                line = line.replace(old, f"{new}/")
            line = re.sub(r"^listener (\d+)", lambda m: f"listener {ports[int(m[1])]}", line)
            for word in line.split()[1:]:
                assert not word.startswith("/") or word.startswith(tuple(f"{new}/" for new in paths.values())), (
                    f"path left unrewritten: {line}")
        out.append(line)
    # As root, mosquitto would drop to its own user and fail to read pytest's 0700 temp dirs.
    if os.geteuid() == 0:
        out.append("user root")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    mosquitto = find_mosquitto()
    passwd_tool = shutil.which("mosquitto_passwd") or str(Path(mosquitto).with_name("mosquitto_passwd"))
    root = tmp_path_factory.mktemp("deploy-mosquitto")
    dirs = {name: root / name for name in ("etc", "certs", "data", "log")}
    for path in dirs.values():
        path.mkdir(exist_ok=True)
    make_certs(certs := root / "certs-src")
    for name in ("ca.crt", "server.crt", "server.key"):
        shutil.copy(certs / name, dirs["certs"] / name)
    shutil.copy(ACL, dirs["etc"] / "acl")
    for i, (user, password) in enumerate(PASSWORDS.items()):
        subprocess.run([passwd_tool, *(["-c"] if i == 0 else []), "-b", str(dirs["etc"] / "passwd"), user, password],
                       check=True, capture_output=True, timeout=30)

    plain, tls = free_port(), free_port()
    conf = root / "mosquitto.conf"
    conf.write_text(rewrite(CONF.read_text(encoding="utf-8"), {
        "/etc/mosquitto/hailong/": dirs["etc"], "/etc/mosquitto/certs/": dirs["certs"],
        "/var/lib/mosquitto/": dirs["data"], "/var/log/mosquitto/": dirs["log"],
    }, {1883: plain, 8883: tls}), encoding="utf-8")
    with open(root / "stderr.log", "wb") as err:
        proc = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=err, stderr=err)
    try:
        try:
            wait_port(plain, up=True)
            wait_port(tls, up=True)
        except TimeoutError:
            logs = "".join(p.read_text() for p in (root / "stderr.log", *dirs["log"].glob("*")))
            raise RuntimeError(f"mosquitto did not start with the deploy config:\n{logs}") from None
        yield Broker(plain, tls, dirs["certs"] / "ca.crt")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Client:
    """A paho MQTT v5 client whose CONNACK, SUBACKs, PUBACKs and messages can be waited for."""

    def __init__(self, broker: Broker, username: str | None, password: str | None = None, *, tls: bool = False):
        self.broker, self.tls = broker, tls
        self.mqtt = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{username}-{uuid.uuid4().hex[:8]}",
                                protocol=mqtt.MQTTv5)
        if username is not None:
            self.mqtt.username_pw_set(username, password)
        if tls:
            self.mqtt.tls_set(ca_certs=str(broker.ca))
        # paho calls back on its network thread; everything it reports goes through here.
        self._changed = threading.Condition()
        self._acks: dict[tuple[str, int], object] = {}  # ("connack" | "suback" | "puback", mid) -> reason
        self.payloads: dict[str, list[bytes]] = {}  # topic -> payloads received, in order
        self.mqtt.on_connect = lambda c, u, flags, rc, props: self._ack("connack", 0, rc)
        self.mqtt.on_subscribe = lambda c, u, mid, rcs, props: self._ack("suback", mid, rcs)
        self.mqtt.on_publish = lambda c, u, mid, rc, props: self._ack("puback", mid, rc)
        self.mqtt.on_message = self._on_message

    def _ack(self, kind: str, mid: int, reason: object) -> None:
        with self._changed:
            self._acks[kind, mid] = reason
            self._changed.notify_all()

    def _on_message(self, client, userdata, msg) -> None:
        with self._changed:
            self.payloads.setdefault(msg.topic, []).append(msg.payload)
            self._changed.notify_all()

    def _wait_ack(self, kind: str, mid: int = 0):
        with self._changed:
            assert self._changed.wait_for(lambda: (kind, mid) in self._acks, WAIT), f"no {kind} for {mid}"
            return self._acks[kind, mid]

    def connect(self):
        """Connect and return the CONNACK reason code."""
        self.mqtt.connect("127.0.0.1", self.broker.tls_port if self.tls else self.broker.plain_port)
        # The network loop runs here until the CONNACK: after a refusal, paho's own thread
        # would sit out its reconnect delay (a second) before loop_stop() could join it.
        deadline = time.monotonic() + WAIT
        while ("connack", 0) not in self._acks:
            assert time.monotonic() < deadline, "no CONNACK"
            self.mqtt.loop(timeout=0.05)  # blocks in select() on the socket
        reason = self._acks["connack", 0]
        if not reason.is_failure:
            self.mqtt.loop_start()
        return reason

    def subscribe(self, *topics: str) -> list:
        """Subscribe at QoS 1 and return the SUBACK reason codes."""
        _, mid = self.mqtt.subscribe([(topic, 1) for topic in topics])
        return self._wait_ack("suback", mid)

    def publish(self, topic: str, payload: bytes):
        """Publish at QoS 1 and return the PUBACK reason code."""
        return self._wait_ack("puback", self.mqtt.publish(topic, payload, qos=1).mid)

    def received(self, topic: str, count: int = 1) -> list[bytes]:
        """Wait for `count` messages on `topic`; return all received there so far."""
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.payloads.get(topic, ())) >= count, WAIT), (
                f"expected {count} on {topic}, got {self.payloads}")
            return self.payloads[topic]

    def receives_nothing(self, topic: str, within: float) -> bool:
        with self._changed:
            return not self._changed.wait_for(lambda: topic in self.payloads, within)

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def clients(broker):
    made: list[Client] = []

    def connect(username: str, *, tls: bool = False) -> Client:
        client = Client(broker, username, PASSWORDS[username], tls=tls)
        made.append(client)
        assert client.connect() == "Success"
        return client

    yield connect
    for client in made:
        client.close()


def service_watching_events(clients) -> Client:
    service = clients(SERVICE)
    assert service.subscribe("hailong/v1/+/event") == ["Granted QoS 1"]
    return service


@pytest.mark.parametrize("username, password", [(None, None), ("hl-a", "wrong"), ("hl-unknown", "pw-a")])
def test_unknown_and_anonymous_clients_are_refused(broker, username, password):
    client = Client(broker, username, password)
    try:
        reason = client.connect()
        assert reason.is_failure and str(reason) in ("Not authorized", "Bad user name or password"), reason
    finally:
        client.close()


def test_device_event_reaches_the_service(clients):
    service = service_watching_events(clients)
    device = clients("hl-a")
    assert device.publish("hailong/v1/hl-a/event", b'{"seq": 1}') == "Success"
    # The protocol's largest payload still fits max_packet_size with its headers.
    assert device.publish("hailong/v1/hl-a/event", b"x" * MAX_PAYLOAD) == "Success"
    assert service.received("hailong/v1/hl-a/event", 2) == [b'{"seq": 1}', b"x" * MAX_PAYLOAD]


def test_device_cannot_publish_as_another_device(clients):
    service = service_watching_events(clients)
    device = clients("hl-a")
    assert device.publish("hailong/v1/hl-b/event", b"forged") == "Not authorized"
    # Mosquitto handles one client's packets in order: by the time the next event has
    # reached the service, the forged one would have arrived before it.
    assert device.publish("hailong/v1/hl-a/event", b"own") == "Success"
    assert service.received("hailong/v1/hl-a/event") == [b"own"]
    assert "hailong/v1/hl-b/event" not in service.payloads


def test_device_cannot_read_another_devices_acks(clients):
    service, a, b = clients(SERVICE), clients("hl-a"), clients("hl-b")
    # Mosquitto 2.0 grants this subscription and filters at delivery instead.
    a.subscribe("hailong/v1/hl-b/ack", "hailong/v1/hl-a/ack")
    b.subscribe("hailong/v1/hl-b/ack")
    assert service.publish("hailong/v1/hl-b/ack", b"for b") == "Success"
    assert service.publish("hailong/v1/hl-a/ack", b"for a") == "Success"
    assert b.received("hailong/v1/hl-b/ack") == [b"for b"]  # so the service could write there
    assert a.received("hailong/v1/hl-a/ack") == [b"for a"]
    # Delivered in order, so b's ack would already be here; the short wait is a second net.
    assert a.receives_nothing("hailong/v1/hl-b/ack", within=0.3)


def test_tls_listener_with_the_ca(clients):
    service = service_watching_events(clients)
    device = clients("hl-a", tls=True)
    assert device.publish("hailong/v1/hl-a/event", b"over tls") == "Success"
    assert service.received("hailong/v1/hl-a/event") == [b"over tls"]


def test_tls_listener_is_not_trusted_without_the_ca(broker):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="untrusting", protocol=mqtt.MQTTv5)
    client.tls_set()  # the system trust store, which does not know the test CA
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect("127.0.0.1", broker.tls_port)


# --- deploy/hailong-broker.service -----------------------------------------------------------

def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(UNIT, encoding="utf-8")
    return unit


def test_unit_file_settings():
    unit = read_unit()
    assert set(unit["Unit"]["After"].split()) >= {"network-online.target", "mosquitto.service"}
    # Only ordered after Mosquitto: it may run on another host, or not at all when embedded.
    assert "mosquitto.service" not in unit["Unit"].get("Requires", "") + unit["Unit"].get("Wants", "")

    service = unit["Service"]
    expected = {
        "ExecStart": "/opt/hailong/.venv/bin/hailong broker run --config /etc/hailong/broker.toml",
        "Restart": "always",
        "User": "hailong",
        "StateDirectory": "hailong",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/hailong",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "ProtectHome": "yes",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert service["Type"] in ("simple", "exec")  # no sd_notify from the service (yet)
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_file_passes_systemd_analyze_verify(tmp_path):
    # verify also insists that ExecStart's binary exists, and the venv is only on the
    # server: point it at this interpreter, keep everything else.
    text = UNIT.read_text(encoding="utf-8").replace("/opt/hailong/.venv/bin/hailong", sys.executable)
    copy = tmp_path / UNIT.name
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr

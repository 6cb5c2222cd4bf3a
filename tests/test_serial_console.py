"""Serial console: frame codec, and agent <-> client over a real pty pair."""
from __future__ import annotations

import select
import time
import os
import stat
import threading
import tomllib
import tty

import pytest

from tests.test_broker_api import service  # noqa: F401  (fixture: the real API)

from protocol.serialframe import (
    EVENT, MAX_PAYLOAD, REQUEST, RESPONSE, FrameCRCError, FrameDecoder, FrameError, FrameTooLarge,
    crc16_ccitt_false, decode_frame, encode_frame,
)

# --- codec ----------------------------------------------------------------------------------


def test_crc_check_value():
    assert crc16_ccitt_false(b"123456789") == 0x29B1


def test_round_trip_and_stuffing():
    obj = {"id": "a~}", "op": "info", "text": "Hải Long ~~ }}"}
    frame = encode_frame(REQUEST, obj)
    assert frame[0] == 0x7E and 0x7E not in frame[1:]
    assert decode_frame(frame) == (REQUEST, obj)
    assert FrameDecoder().feed(frame) == [(REQUEST, obj)]


def test_stuffing_of_header_and_crc_bytes():
    # length 0x7E -> the length byte itself must be escaped
    for n in range(100, 140):
        obj = {"x": "a" * n}
        frame = encode_frame(0x7E, obj)
        assert 0x7E not in frame[1:]
        assert decode_frame(frame) == (0x7E, obj)


def test_crc_error_dropped_and_counted():
    frame = bytearray(encode_frame(RESPONSE, {"id": "1", "ok": True}))
    frame[6] ^= 0x01
    with pytest.raises(FrameCRCError):
        decode_frame(bytes(frame))
    d = FrameDecoder()
    good = encode_frame(EVENT, {"event": "press", "button": "1"})
    assert d.feed(bytes(frame) + good) == [(EVENT, {"event": "press", "button": "1"})]
    assert d.crc_errors == 1 and d.dropped == 1
    assert isinstance(d.last_error, ValueError)


def test_split_frames_byte_by_byte_and_garbage():
    frames = [encode_frame(REQUEST, {"id": str(i), "op": "info"}) for i in range(3)]
    stream = b"\x00\xffnoise" + frames[0] + b"\x7d\x7d" + frames[1] + b"junk\x7e\x01" + frames[2]
    d = FrameDecoder()
    got = []
    for b in stream:
        got += d.feed(bytes([b]))
    assert [o["id"] for _, o in got] == ["0", "1", "2"]
    assert d.garbage_bytes > 0 and d.malformed == 1  # the "\x7e\x01" stub cut short


def test_oversize():
    with pytest.raises(FrameTooLarge):
        encode_frame(REQUEST, {"x": "a" * MAX_PAYLOAD})
    # a header announcing too much is dropped without buffering it
    d = FrameDecoder()
    assert d.feed(b"\x7e\x01\xff\xff" + b"a" * 100 + encode_frame(EVENT, {"event": "e"})) == [(EVENT, {"event": "e"})]
    assert d.oversize == 1
    assert issubclass(FrameTooLarge, FrameError) and issubclass(FrameError, ValueError)


def test_non_object_payload_rejected():
    with pytest.raises(FrameError):
        encode_frame(REQUEST, ["not", "a", "dict"])  # type: ignore[arg-type]


# --- agent and client over a pty ------------------------------------------------------------

DEVICE_TOML = """\
[device]
id = "{id}"
site = "kien-thuy"
counter = "3"
data_dir = "{data}"
[mqtt]
host = "127.0.0.1"
port = 1883
username = "{id}"
password_file = "mqtt-password"
[clock]
trust = "always"
"""


def make_bundle(tmp, name, *, device_id="dev-1", key=b"k" * 32, toml=None):
    d = tmp / name
    d.mkdir()
    (d / "device.toml").write_text(toml or DEVICE_TOML.format(id=device_id, data=tmp / "data"))
    (d / "mqtt-password").write_text("s3cret\n")
    (d / "provisioning-key").write_bytes(key + b"\n")
    return d


class Rig:
    def __init__(self, tmp, *, panel=None, display=None, badge_reader=None, broker_check=None, client=True, stream=None):
        from device.agent import Agent, FdStream
        from provisioning.serial_client import SerialClient

        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.etc = tmp / "etc"
        self.agent = Agent((stream or FdStream)(self.master), bundle_dir=self.etc, key_file=self.etc / "provisioning-key",
                           panel=panel, display=display, badge_reader=badge_reader,
                           broker_check=broker_check, clock_synced=lambda: True, backlog=lambda: 7).start()
        # only one reader may hold the slave end: a second one would steal answers
        self.client = SerialClient(os.ttyname(self.slave), timeout=2.0) if client else None

    def close(self):
        if self.client is not None:
            self.client.close()
        self.agent.stop()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


def test_info_unprovisioned(rig):
    info = rig.client.info()
    assert info["provisioned"] is False and info["device_id"] is None
    assert info["firmware"] and info["backlog"] == 7 and info["clock_synced"] is True


def test_push_challenge_response(rig, tmp_path):
    from device.config import config_from_dict
    from provisioning.serial_client import RemoteError

    first = make_bundle(tmp_path, "b1", key=b"first-key")
    assert rig.client.push(first, None)["device_id"] == "dev-1"
    for name in ("device.toml", "mqtt-password", "provisioning-key"):
        assert stat.S_IMODE((rig.etc / name).stat().st_mode) == 0o600
    cfg = config_from_dict(tomllib.loads((rig.etc / "device.toml").read_text()), base_dir=rig.etc)
    assert cfg.mqtt.password == "s3cret"
    assert rig.client.info()["provisioned"] is True

    second = make_bundle(tmp_path, "b2", key=b"second-key", toml=DEVICE_TOML.format(id="dev-1", data="/tmp/x2"))
    with pytest.raises(RemoteError, match="needs a proof"):
        rig.client.push(second, None)
    with pytest.raises(RemoteError, match="wrong proof"):
        rig.client.push(second, b"not-the-key")
    assert (rig.etc / "provisioning-key").read_bytes() == b"first-key\n"  # nothing written

    rig.client.push(second, b"first-key\n")  # trailing newline of a key file is ignored
    assert (rig.etc / "provisioning-key").read_bytes() == b"second-key\n"
    assert "/tmp/x2" in (rig.etc / "device.toml").read_text()


def test_replayed_nonce_refused(rig, tmp_path):
    from protocol.serialframe import push_proof
    from provisioning.serial_client import RemoteError, read_bundle

    rig.client.push(make_bundle(tmp_path, "b1", key=b"key1"), None)
    files = read_bundle(make_bundle(tmp_path, "b2", key=b"key1"))
    nonce = bytes.fromhex(rig.client.request("challenge")["nonce"])
    proof = push_proof(b"key1", nonce, files)
    rig.client.request("push", files=files, proof=proof)
    with pytest.raises(RemoteError, match="no valid challenge"):
        rig.client.request("push", files=files, proof=proof)


def test_expired_nonce_refused(tmp_path):
    from protocol.serialframe import push_proof
    from provisioning.serial_client import RemoteError, read_bundle

    r = Rig(tmp_path)
    try:
        now = [1000.0]
        r.agent.clock = lambda: now[0]
        r.client.push(make_bundle(tmp_path, "b1", key=b"key1"), None)
        files = read_bundle(make_bundle(tmp_path, "b2", key=b"key1"))
        nonce = bytes.fromhex(r.client.request("challenge")["nonce"])
        now[0] += 61
        with pytest.raises(RemoteError, match="no valid challenge"):
            r.client.request("push", files=files, proof=push_proof(b"key1", nonce, files))
    finally:
        r.close()


def test_invalid_device_toml_refused_nothing_written(rig, tmp_path):
    from provisioning.serial_client import RemoteError

    bad = make_bundle(tmp_path, "bad", toml='[device]\nid = "dev 1 bad"\n[mqtt]\nport = 99999\n')
    with pytest.raises(RemoteError, match="device.toml is invalid"):
        rig.client.push(bad, None)
    assert not rig.etc.exists() or not any(rig.etc.iterdir())


def test_retry_after_garbled_request(rig):
    # noise before the request, and a garbled first copy: the client's retry gets through
    os.write(rig.slave, b"\x7e\x01\x00\x05garbage-garbage")
    assert rig.client.info()["provisioned"] is False


def test_retry_after_lost_answer(tmp_path):
    from device.agent import FdStream

    class GarbleFirst(FdStream):
        writes = 0

        def write(self, data):
            GarbleFirst.writes += 1
            if GarbleFirst.writes == 1:  # the first answer is damaged on the line
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            return super().write(data)

    r = Rig(tmp_path, stream=GarbleFirst)
    try:
        r.client.timeout = 0.5
        assert r.client.info()["provisioned"] is False
        # Flipping the last byte usually breaks the CRC, but it may also turn into a start or
        # escape byte (then the frame is cut short): either way one damaged answer, dropped.
        assert GarbleFirst.writes == 2 and r.client.decoder.dropped == 1
    finally:
        r.close()


def _panel_and_display():
    from gpiozero.pins.mock import MockFactory

    from device.display import TextDisplay
    from device.panel import Panel

    holder = {}
    panel = Panel(rating_pins=[5, 6, 13, 19], led_pins=[12, 16, 20, 21], next_pin=26, recall_pin=24,
                  buzzer_pin=None, bounce_s=0, pin_factory=MockFactory(),
                  on_input=lambda *a: holder["agent"].on_input(*a))
    return panel, TextDisplay(4), holder


def _run_selftest(tmp_path, skip=()):
    panel, display, holder = _panel_and_display()
    rig = Rig(tmp_path, panel=panel, display=display, broker_check=lambda: (True, "logged in as dev-1"))
    holder["agent"] = rig.agent
    led_seen = {}

    def prompt(check, message):
        if check.startswith("button "):
            name = check.split(" ", 1)[1]
            if name.isdigit():
                led_seen[name] = panel.leds_state()[int(name) - 1]
            if name not in skip:
                panel.press(name)
                panel.release(name)
        if check.startswith("display"):
            assert display.text.strip() != ""
        return "y"

    try:
        rows = rig.client.selftest(True, prompt, press_timeout=0.5 if skip else 5.0)
        return rows, led_seen, panel, display
    finally:
        rig.close()
        panel.close()


def test_selftest_all_pass(tmp_path):
    rows, led_seen, panel, display = _run_selftest(tmp_path)
    table = {check: (result, detail) for check, result, detail in rows}
    for check in ["button 1", "button 2", "button 3", "button 4", "button next", "button recall",
                  "display all", "display digit 1", "display digit 4", "broker login", "clock", "info"]:
        assert table[check][0] == "PASS", (check, table[check])
    assert table["badge reader"][0] == "SKIP"
    assert led_seen == {"1": True, "2": True, "3": True, "4": True}
    assert table["display all"][1] == "showed '8888'"
    assert table["display digit 2"][1] == "showed ' 8  '"
    assert not any(r == "FAIL" for _, r, _ in rows)


def test_selftest_unpressed_button_fails(tmp_path):
    rows, *_ = _run_selftest(tmp_path, skip={"3"})
    table = {check: (result, detail) for check, result, detail in rows}
    assert table["button 3"][0] == "FAIL" and "not pressed" in table["button 3"][1]
    assert table["button 2"][0] == "PASS" and table["button 4"][0] == "PASS"


def test_badge_read(tmp_path):
    r = Rig(tmp_path, badge_reader=object())
    try:
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("uid", r.client.read_badge(5.0)))
        t.start()
        # the tap arrives once the agent has been asked (its "want badge" flag is set)
        for _ in range(200):
            if r.agent._want_badge:
                break
            threading.Event().wait(0.01)
        r.agent.on_badge("0A1B2C3D4E")
        t.join(5)
        assert result["uid"] == "0A1B2C3D4E"
    finally:
        r.close()


def test_main_serial_cli(tmp_path, capsys):
    from provisioning.serial_client import main_serial

    r = Rig(tmp_path, client=False)
    try:
        port = os.ttyname(r.slave)
        bundle = make_bundle(tmp_path, "b1", key=b"key1")
        assert main_serial(["--port", port, "push", "--device", "dev-1", "--bundle", str(bundle)]) == 0
        assert main_serial(["--port", port, "push", "--device", "other", "--bundle", str(bundle)]) == 1
        assert "not 'other'" in capsys.readouterr().err
        assert main_serial(["--port", port, "push", "--device", "dev-1", "--bundle", str(bundle),
                            "--key-file", str(tmp_path / "nope")]) == 1
        assert main_serial(["--port", port, "push", "--device", "dev-1", "--bundle", str(bundle)]) == 0
        assert main_serial(["--port", port, "info"]) == 0
        assert '"dev-1"' in capsys.readouterr().out
    finally:
        r.close()
    assert main_serial(["--port", str(tmp_path / "no-such-tty"), "info"]) == 1


def test_hailong_device_agent_answers_info_on_a_real_pty(tmp_path):
    import subprocess
    import sys

    from protocol.serialframe import REQUEST, RESPONSE, FrameDecoder, encode_frame
    from tests.support import ROOT

    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hailong.cli", "device", "agent", "--simulate", "--port", os.ttyname(slave),
         "--bundle-dir", str(tmp_path / "bundle")], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        decoder, answers = FrameDecoder(), []
        deadline = time.monotonic() + 20
        while not answers and time.monotonic() < deadline:
            os.write(master, encode_frame(REQUEST, {"id": "1", "op": "info"}))
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                answers = [obj for kind, obj in decoder.feed(os.read(master, 4096)) if kind == RESPONSE]
        assert answers and answers[0]["ok"] and answers[0]["result"]["provisioned"] is False
    finally:
        proc.terminate()
        assert proc.wait(10) == 0, proc.stderr.read()
        os.close(master)
        os.close(slave)


def test_provision_serial_push_defaults_to_the_inventorys_bundle(tmp_path):
    import shutil

    from provisioning.cli import main as provision

    inventory = tmp_path / "inventory"
    bundle = make_bundle(tmp_path, "b1", key=b"key1")
    (inventory / "bundles").mkdir(parents=True)
    shutil.copytree(bundle, inventory / "bundles" / "dev-1")
    r = Rig(tmp_path, client=False)
    try:
        port = os.ttyname(r.slave)
        assert provision(["--inventory", str(inventory), "serial", "--port", port, "push", "--device", "dev-1"]) == 0
        assert (r.agent.bundle_dir / "device.toml").read_bytes() == (bundle / "device.toml").read_bytes()
    finally:
        r.close()


def test_badge_enrol_records_the_tap_with_the_real_service(tmp_path, service):  # noqa: F811
    """The real API (uvicorn, store, ingest on a real Mosquitto) as the service tests stand it up."""
    from provisioning.serial_client import main_badge

    r = Rig(tmp_path, client=False, badge_reader=object())  # a reader is fitted; taps come via on_badge
    try:
        service.store.upsert_officer("o1", "Nguyễn Thị Lan", code="01")
        token = tmp_path / "token"
        token.write_text(service.tokens["admin"])

        def tap_when_armed():
            deadline = time.monotonic() + 10
            while not r.agent._want_badge and time.monotonic() < deadline:
                threading.Event().wait(0.01)
            r.agent.on_badge("0A1B2C3D4E")

        threading.Thread(target=tap_when_armed, daemon=True).start()
        assert main_badge(["enrol", "--officer", "o1", "--port", os.ttyname(r.slave),
                           "--service-url", service.server.url, "--token-file", str(token), "--timeout", "10"]) == 0
        assert service.store.officer("o1")["badge"] == "0A1B2C3D4E"
    finally:
        r.close()

"""The counter firmware as a real process against a real Mosquitto and a stand-in service."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from protocol.events import validate_event
from tests.support import ROOT, DeviceProcess, FakeService, write_config


@pytest.fixture
def service(mosquitto):
    s = FakeService(mosquitto)
    yield s
    s.close()


@pytest.fixture
def start_device(tmp_path, mosquitto):
    procs = []

    def start(extra: str = "", device_id: str = "dev-1", **kw):
        cfg = write_config(tmp_path, mosquitto, device_id=device_id, extra=extra, **kw)
        p = DeviceProcess(cfg)
        procs.append(p)
        p.wait_ready()
        return p

    yield start
    for p in procs:
        p.close()


def online(dev):
    return dev.wait("online", lambda v: v[-1] is True)


def test_press_is_stored_before_feedback_and_delivered_exactly_once(start_device, service):
    dev = start_device()
    online(dev)
    dev.send("press 4")
    (acked,) = dev.wait("acked")[-1:]
    stored = dev.stored()
    assert len(stored) == 1 and acked == [stored[0]["seq"]]
    ev = validate_event(stored[0])
    assert (ev["type"], ev["score"], ev["scale"], ev["flags"], ev["device"], ev["site"], ev["counter"]) == (
        "rating", 4, 4, [], "dev-1", "kien-thuy", "3")
    # The exact payload on the wire is the stored event.
    assert service.events() == [ev]
    # Feedback only after the commit: the first display change after the press follows "stored".
    keys = [next(iter(r)) for r in dev.lines.items]
    first_stored = keys.index("stored")
    assert "display" in keys[first_stored:]
    assert dev.of("display")[keys[:first_stored].count("display")] == " -4-"
    assert dev.quit() == 0
    # Acked means gone from the ledger.
    db = sqlite3.connect(tmp_ledger(dev))
    assert db.execute("select count(*) from events").fetchone()[0] == 0


def tmp_ledger(dev):
    cfg = dev.proc.args[dev.proc.args.index("--config") + 1]
    text = open(cfg).read()
    data_dir = text.split('data_dir = "')[1].split('"')[0]
    return f"{data_dir}/ledger.db"


def test_misuse_is_flagged_not_dropped(start_device, service):
    dev = start_device()
    online(dev)
    dev.send("press 4", "press 1", "chord 2 3")
    dev.wait("stored", lambda v: len(v) == 4)
    flags = [(e["score"], e["flags"]) for e in dev.stored()]
    assert flags == [(4, []), (1, ["repeat"]), (2, ["repeat"]), (3, ["repeat", "chord"])]
    service.received.wait_for(lambda items: len(items) >= 4)


def test_ticket_flow_with_service_answer(start_device, service):
    dev = start_device()
    online(dev)
    dev.send("press next")
    call = service.received.wait_for(lambda items: [e for _, e in items if e["type"] == "call"])[0]
    assert call["action"] == "next"
    service.send("dev-1", "cmd", {"cmd": "ticket", "ticket": "1043", "seq": call["seq"]})
    dev.wait("display", lambda v: v[-1] == "1043")
    dev.send("wait 0.2", "press 3")
    dev.wait("stored", lambda v: any(e["type"] == "rating" for e in v))
    rating = [e for e in dev.stored() if e["type"] == "rating"][0]
    assert rating["ticket"] == "1043" and rating["flags"] == []


def test_assignment_sets_officer_on_every_event(start_device, service):
    service.send("dev-1", "assignment", {"officer": {"id": "o-7", "name": "Lê Thu", "code": "07"}}, retain=True)
    dev = start_device()
    online(dev)
    signin = dev.wait("stored", lambda v: any(e["type"] == "signin" for e in v))[0]
    assert (signin["method"], signin["officer"]) == ("central", "o-7")
    dev.send("press 2")
    dev.wait("stored", lambda v: any(e["type"] == "rating" for e in v))
    assert [e["officer"] for e in dev.stored() if e["type"] == "rating"] == ["o-7"]


def test_broker_outage_loses_nothing_and_shows_local_ticket(start_device, service, mosquitto):
    dev = start_device()
    online(dev)
    mosquitto.stop()
    dev.wait("online", lambda v: v[-1] is False)
    dev.send("press next")
    dev.wait("display", lambda v: v[-1] == "L001")
    dev.send("wait 0.1", "press 4", "wait 0.1", "press 2")
    dev.wait("stored", lambda v: len(v) == 3)
    assert dev.of("acked") == []
    mosquitto.start()
    online(dev)
    dev.wait("acked", lambda v: sum(len(a) for a in v) == 3, timeout=30)
    keys = {(e["ledger"], e["seq"]) for e in service.events()}
    assert keys == {(e["ledger"], e["seq"]) for e in dev.stored()}


def test_unacked_events_are_resent_after_restart(tmp_path, mosquitto):
    service = FakeService(mosquitto, auto_ack=False)
    try:
        cfg = write_config(tmp_path, mosquitto)
        dev = DeviceProcess(cfg)
        dev.wait_ready()
        online(dev)
        dev.send("press 4")
        service.received.wait_for(lambda items: len(items) == 1)
        dev.kill()
        dev2 = DeviceProcess(cfg)
        assert dev2.wait_ready()[0] is True
        assert dev2.lines.items[[("ready" in r) for r in dev2.lines.items].index(True)]["backlog"] == 1
        first = service.received.items[0][1]
        service.received.wait_for(lambda items: len(items) >= 2)
        assert service.received.items[1][1] == first  # byte-identical resend
        service.ack("dev-1", first["ledger"], [first["seq"]])
        assert dev2.wait("acked")[-1] == [first["seq"]]
        dev2.quit()
    finally:
        service.close()


def test_ack_timeout_triggers_resend(start_device, mosquitto):
    service = FakeService(mosquitto, auto_ack=False)
    try:
        dev = start_device(extra="[ledger]\nack_timeout_s = 0.5\n")
        online(dev)
        dev.send("press 3")
        service.received.wait_for(lambda items: len(items) >= 2, timeout=10)
        a, b = service.received.items[0][1], service.received.items[1][1]
        assert a == b
    finally:
        service.close()


def test_corrupt_ledger_is_quarantined_and_device_keeps_working(tmp_path, mosquitto, service):
    data = tmp_path / "data"
    data.mkdir()
    (data / "ledger.db").write_bytes(b"this is not a database" * 100)
    dev = DeviceProcess(write_config(tmp_path, mosquitto))
    try:
        dev.wait_ready()
        q = dev.of("quarantined")
        assert len(q) == 1 and (tmp_path / "data").joinpath(q[0].split("/")[-1]).read_bytes().startswith(b"this is not")
        online(dev)
        telemetry = service.telemetry.wait_for(lambda items: items)[0][1]
        assert telemetry["ledger_quarantined"] == q[0]
        dev.send("press 4")
        dev.wait("acked")
    finally:
        dev.close()


def test_malformed_command_is_logged_and_ignored(start_device, service):
    dev = start_device()
    online(dev)
    # The device subscribes before it publishes its status, on the same connection: once the
    # service has its status, the broker has its subscriptions, and no command can arrive before.
    service.status.wait_for(lambda items: [i for i in items if i[1] and i[1]["online"]])
    service.send("dev-1", "cmd", b"{not json")
    service.send("dev-1", "cmd", {"cmd": "self-destruct"})
    service.send("dev-1", "cmd", {"cmd": "display", "ticket": "0042"})
    dev.wait("display", lambda v: v[-1] == "0042")
    assert dev.proc.poll() is None
    dev.quit()
    log = "\n".join(dev.stderr_lines)
    assert "ignoring malformed message" in log and "self-destruct" in log


def test_status_online_retained_and_offline_on_quit(start_device, service):
    dev = start_device()
    online(dev)
    _, status = service.status.wait_for(lambda items: [i for i in items if i[1] and i[1]["online"]])[0]
    assert status["fw"] and len(status["ledger"]) == 16
    telemetry = service.telemetry.wait_for(lambda items: items)[0][1]
    assert telemetry["backlog"] == 0 and telemetry["clock_ok"] is True
    assert dev.quit() == 0
    service.status.wait_for(lambda items: items[-1][1] == {"online": False})


def test_will_says_offline_when_the_device_dies(start_device, service):
    dev = start_device()
    online(dev)
    service.status.wait_for(lambda items: items)
    dev.kill()
    service.status.wait_for(lambda items: items[-1][1] == {"online": False})


def test_bad_config_reports_every_error_and_exits_nonzero(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[device]\nid = "no spaces allowed"\nsite = ""\n[mqtt]\nport = "abc"\nhots = "x"\n')
    r = subprocess.run(
        [sys.executable, "-m", "hailong.cli", "device", "run", "--config", str(bad)],
        capture_output=True, text=True, cwd=ROOT, timeout=30,
    )
    assert r.returncode == 2
    for key in ("device.id", "device.site", "device.counter", "device.data_dir", "mqtt.host", "mqtt.port", "mqtt.hots"):
        assert key in r.stderr, key


def test_example_config_is_complete_and_loads(tmp_path):
    r = subprocess.run([sys.executable, "-m", "hailong.cli", "device", "example-config"],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0 and "[mqtt]" in r.stdout and "rating_buttons" in r.stdout


def test_low_rating_reason_travels_inside_the_same_event(start_device, service):
    dev = start_device(extra='[rating]\nreasons = ["Chờ lâu", "Thái độ", "Khác"]\nreason_window_s = 5\n')
    online(dev)
    dev.send("press 1")
    dev.wait("display", lambda v: v[-1] == "?1-3")
    assert dev.of("acked") == []  # held back while the citizen may still answer
    dev.send("press 2")
    (updated,) = dev.wait("updated")
    assert updated["reason"] == "Thái độ" and updated["seq"] == dev.stored()[0]["seq"]
    dev.wait("acked")
    assert [(e["score"], e["reason"], e["flags"]) for e in service.events()] == [(1, "Thái độ", [])]


def test_badge_tap_signs_the_officer_in(start_device, service):
    dev = start_device(extra='[[officers]]\nid = "o-9"\nname = "Phạm Hà"\ncode = "09"\nbadge = "0a1b2c3d4e"\n')
    online(dev)
    dev.send("badge 0A1B2C3D4E", "wait 0.1", "press 3")
    dev.wait("stored", lambda v: len(v) == 2)
    signin, rating = dev.stored()
    assert (signin["type"], signin["method"], signin["badge"], signin["officer"]) == ("signin", "badge", "0A1B2C3D4E", "o-9")
    assert rating["officer"] == "o-9"
    assert " P09" in dev.of("display")


def test_holding_next_closes_the_counter(start_device, service):
    dev = start_device(extra="[staff]\nhold_close_s = 0.5\n")
    online(dev)
    dev.send("hold next 0.8")
    dev.wait("display", lambda v: v[-1] == " OFF")
    assert [(e["type"], e["action"]) for e in dev.stored()] == [("call", "close")]


def test_sigterm_flushes_says_offline_and_exits_zero(start_device, service):
    import signal

    dev = start_device()
    online(dev)
    dev.send("press 4")
    dev.wait("acked")
    dev.proc.send_signal(signal.SIGTERM)
    assert dev.proc.wait(15) == 0
    service.status.wait_for(lambda items: items[-1][1] == {"online": False})


def test_tells_systemd_ready_and_pings_the_watchdog(tmp_path, mosquitto):
    import socket

    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(15)
    dev = DeviceProcess(write_config(tmp_path, mosquitto), env={
        "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000",
    })
    try:
        # WATCHDOG_PID is unset, so the watchdog applies to the main process, which is ours.
        seen = set()
        while not {"READY=1", "WATCHDOG=1"} <= seen:
            seen.add(sock.recv(256).decode())
        dev.quit()
        while "STOPPING=1" not in seen:
            seen.add(sock.recv(256).decode())
    finally:
        sock.close()
        dev.close()


def test_single_keys_work_on_a_terminal(tmp_path, mosquitto, service):
    import json
    import os
    import pty
    import subprocess
    import sys as _sys

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [_sys.executable, "-m", "hailong.cli", "device", "run", "--simulate",
         "--config", str(write_config(tmp_path, mosquitto))],
        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
    )
    os.close(slave)
    import threading

    watchdog = threading.Timer(20, proc.kill)  # a broken device must fail this test, not hang it
    watchdog.start()
    try:
        records = []
        for line in proc.stdout:
            records.append(json.loads(line))
            if records[-1].get("online") is True:
                break
        os.write(master, b"3")
        for line in proc.stdout:
            records.append(json.loads(line))
            if "stored" in records[-1]:
                break
        assert records[-1]["stored"]["score"] == 3
        os.write(master, b"q")
        assert proc.wait(15) == 0
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        os.close(master)

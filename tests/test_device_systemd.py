"""sd_notify against a real datagram socket, and the counter's systemd unit."""
from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from device import systemd

UNIT = Path(__file__).resolve().parent.parent / "deploy" / "hailong-device.service"


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """What systemd listens on for a Type=notify service."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)  # a missing datagram fails the test instead of hanging it
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield sock


@pytest.mark.parametrize(
    ("call", "datagram"),
    [
        (systemd.ready, b"READY=1"),
        (systemd.stopping, b"STOPPING=1"),
        (systemd.watchdog_ping, b"WATCHDOG=1"),
        (lambda: systemd.status("online, 3 votes queued"), b"STATUS=online, 3 votes queued"),
        (lambda: systemd.notify("RELOADING=1"), b"RELOADING=1"),
    ],
)
def test_sends_exact_datagram(notify_socket, call, datagram):
    assert call() is True
    assert notify_socket.recv(256) == datagram


def test_status_stays_on_one_line(notify_socket):
    assert systemd.status("broker unreachable\nretrying")
    assert notify_socket.recv(256) == b"STATUS=broker unreachable retrying"


def test_abstract_socket(monkeypatch):
    name = f"hailong-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.ready() is True
        assert sock.recv(256) == b"READY=1"


@pytest.mark.parametrize("value", [None, "", "relative/notify.sock", "vsock:2:1234"])
def test_not_under_systemd_is_a_no_op(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert systemd.ready() is False
    assert systemd.watchdog_ping() is False


def test_unreachable_socket_reports_false(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert systemd.watchdog_ping() is False
    assert "WATCHDOG=1" in caplog.text


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),  # WatchdogSec=30, WATCHDOG_PID unset: ours
        ("30000000", "self", 15.0),
        ("400000", "self", 0.2),
        ("30000000", "other", None),  # inherited by a child: not ours to ping
        ("30000000", "not-a-pid", None),
        (None, None, None),
        ("", None, None),
        ("0", None, None),
        ("-5", None, None),
        ("thirty", None, None),
    ],
)
def test_watchdog_interval(monkeypatch, usec, pid, expected):
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        value = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert systemd.watchdog_interval() == expected


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(UNIT, encoding="utf-8")
    return unit


def test_unit_file_settings():
    unit = read_unit()
    assert set(unit["Unit"]["After"].split()) >= {"network-online.target", "time-sync.target"}
    assert unit["Unit"]["Wants"] == "network-online.target"

    service = unit["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/opt/hailong/.venv/bin/hailong device boot --config /etc/hailong/device.toml",
        "WatchdogSec": "30",
        "Restart": "always",
        "RestartSec": "2",
        "User": "hailong",
        "StateDirectory": "hailong",
        "KillSignal": "SIGTERM",
        "TimeoutStopSec": "15",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/hailong",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
    }
    assert {key: service.get(key) for key in expected} == expected
    assert set(service["SupplementaryGroups"].split()) == {"gpio", "spi", "dialout"}
    # Each of these would hide /dev/gpiochip*, /dev/spidev* or /dev/serial0.
    for key in ("PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock"):
        assert key not in service, key
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", ["hailong-device.service", "hailong-agent.service"])
def test_unit_file_passes_systemd_analyze_verify(tmp_path, name):
    unit_file = UNIT.with_name(name)
    # verify also insists that ExecStart's binary exists, and the venv is only
    # on a counter: point it at this interpreter, keep everything else.
    text = unit_file.read_text(encoding="utf-8").replace("/opt/hailong/.venv/bin/hailong", sys.executable)
    copy = tmp_path / name
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if name in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr

AGENT_UNIT = UNIT.with_name("hailong-agent.service")


def test_agent_unit_cannot_run_beside_the_counter_service():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(AGENT_UNIT, encoding="utf-8")
    assert unit["Unit"]["Conflicts"] == "hailong-device.service"  # both own the same GPIO pins
    service = unit["Service"]
    assert service["ExecStart"].split()[1:4] == ["device", "agent", "--port"]
    assert service["ReadWritePaths"] == "/etc/hailong" and service["ProtectSystem"] == "strict"
    assert set(service["SupplementaryGroups"].split()) == {"gpio", "spi", "dialout"}


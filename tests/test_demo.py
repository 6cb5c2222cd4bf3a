"""`hailong demo`: the real service, four real counters and simulated citizens in one command.

The demo's headless JSON lines report every press the counters stored (with its flags),
so these tests add up the counted ratings independently of the store and compare them with
what the service's HTTP API says.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from datetime import date, timedelta

from device.escpos import CUT
from tests.mosquitto import free_port
from tests.support import ROOT, Waiter


def demo_args(data, *extra: str, port: int | None = None) -> list[str]:
    return [sys.executable, "-m", "hailong.cli", "demo", "--headless", "--port", str(port or free_port()),
            "--mqtt-port", str(free_port()), "--data", str(data), *extra]


class RunningDemo:
    """A demo process whose JSON lines are collected on a thread, to wait for without sleeping."""

    def __init__(self, args: list[str], stdin=None):
        self.lines = Waiter(dead=lambda items: bool(items) and items[-1].get("event") == "eof")
        self.stderr: list[str] = []
        self.proc = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=ROOT)
        self._out = threading.Thread(target=self._read, daemon=True)
        self._err = threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True)
        self._out.start()
        self._err.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))  # every stdout line must be one JSON object
        self.lines.append({"event": "eof"})

    def wait_event(self, predicate, timeout: float = 40, what: str = "event") -> dict:
        found = self.lines.wait_for(lambda items: next((r for r in items if predicate(r)), None), timeout, what)
        return found

    def finish(self, timeout: float = 40) -> int:
        code = self.proc.wait(timeout)
        self._out.join(5)
        self._err.join(5)
        return code

    def events(self, kind: str) -> list[dict]:
        return [r for r in self.lines.items if r.get("event") == kind]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def api_get(url: str, token: str):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_demo_counts_every_citizen_press_and_reuses_its_data(tmp_path):
    data = tmp_path / "demo"
    run = subprocess.run(demo_args(data, "--duration", "20", "--seed", "1"),
                         capture_output=True, text=True, cwd=ROOT, timeout=90)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    started = next(r for r in lines if r["event"] == "started")
    assert started["url"].startswith("http://127.0.0.1:")
    assert started["login"]["user"] == "demo" and started["login"]["role"] == "manager"
    # Two centres: the province's manager sees both, the commune's only its own.
    assert set(started["sites"]) == {"demo", "demo-xa"}
    assert started["commune_login"]["user"] == "xa-minh-tan" and started["commune_login"]["sites"] == ["demo-xa"]
    assert started["reused"] is False and len(started["counters"]) == 4

    ratings = [r for r in lines if r["event"] == "stored" and r["type"] == "rating"]
    counted = [r for r in ratings if r["counted"]]
    assert all(r["counted"] == (not r["flags"]) for r in ratings)
    assert {r["counter"] for r in counted} == {1, 2, 3, 4}, "every counter had counted ratings"
    assert any(r["flags"] for r in ratings), "the citizens misused the buttons sometimes"
    assert any(r["score"] <= 2 for r in counted) and any(r["score"] == 4 for r in counted)
    officer_of = {c["counter"]: c["officer"]["id"] for c in started["counters"]}
    assert all(r["officer"] == officer_of[r["counter"]] for r in ratings), "each counter's officer was assigned"
    expected = Counter(r["officer"] for r in counted)
    expected_flagged = Counter(r["officer"] for r in ratings if r["flags"])

    # The queue: citizens took tickets at the real kiosk firmware, which printed them; the counters called
    # them; the hall display's address.
    taken = [r for r in lines if r["event"] == "ticket"]
    assert taken and all(r["queue"] in ("A", "B") and r["printed"] and r["device"] == "demo-kiosk" for r in taken)
    assert started["kiosk_printer"] == str(data / "kiosk-printer.bin")
    paper = (data / "kiosk-printer.bin").read_bytes()
    assert paper.count(CUT) == len(taken), "the printer fed and cut once per ticket"
    assert len({(r["date"], r["ticket"]) for r in taken}) == len(taken), "every printed number is unique that day"
    assert any(r["type"] == "call" and r.get("ticket") not in (None, "----") for r in lines if r["event"] == "stored")
    assert started["hall"].startswith(f"{started['url']}/hall/demo?key=hl_")
    assert not [r for r in lines if r["event"] == "error"]

    stopped = next(r for r in lines if r["event"] == "counters_stopped")
    assert stopped["offline"] == [1, 2, 3, 4] and set(stopped["exit_codes"].values()) == {0}
    assert stopped["kiosk_exit_code"] == 0
    summary = lines[-1]
    assert summary["event"] == "summary" and summary["drained"] is True
    assert {row["key"]: row["ratings"] for row in summary["officers"]} == expected

    # A second run reuses the data folder: same login, the first run's ratings still there,
    # and the HTTP API (no citizens this time: --rate 0) reports exactly what the citizens pressed.
    second = RunningDemo(demo_args(data, "--rate", "0"))
    try:
        again = second.wait_event(lambda r: r.get("event") == "started", what="second start")
        assert again["reused"] is True and again["store_counts"]["events"] > 0
        assert again["login"] == started["login"] and again["api_token"] == started["api_token"]
        assert again["commune_login"] == started["commune_login"]
        sites = {c["counter"]: c for c in api_get(f"{again['url']}/api/v1/counters", again["api_token"])["items"]}
        assert {n: sites[str(n)]["site"] for n in range(1, 5)} == {1: "demo", 2: "demo", 3: "demo-xa", 4: "demo-xa"}
        day = date.fromisoformat(summary["day"])
        figures = api_get(f"{again['url']}/api/v1/satisfaction?group=officer&from={day - timedelta(days=1)}"
                          f"&to={day + timedelta(days=1)}", again["api_token"])
        assert {row["key"]: row["ratings"] for row in figures["rows"]} == expected
        assert {row["key"]: row["flagged"] for row in figures["rows"] if row["flagged"]} == expected_flagged
        stored = []  # every day the run took tickets on (a run may cross midnight)
        for when in sorted({r["date"] for r in taken}):
            items = api_get(f"{again['url']}/api/v1/tickets?site=demo&date={when}", again["api_token"])["items"]
            assert sorted(t["ticket"] for t in items) == sorted(r["ticket"] for r in taken if r["date"] == when)
            stored += items
        # What the kiosk printed is what the service holds: its numbers, from the kiosk, called by the counters.
        printed = {(r["date"], r["ticket"]): r for r in taken}
        for t in stored:
            assert t["device"] == "demo-kiosk" and t["source"] == printed[t["date"], t["ticket"]]["source"]
            assert t["priority"] == printed[t["date"], t["ticket"]]["priority"]
        served = [t for t in stored if t["source"] == "service" and t["status"] in ("called", "done")]
        assert any(t["status"] == "done" for t in served), stored
        assert {t["counter"] for t in served} <= {"1", "2"}, "only the kiosk's centre's counters call its tickets"
        # The hall display opens with this run's key (the last run's was revoked) and lists the calls.
        with urllib.request.urlopen(again["hall"], timeout=10) as r:
            assert 'id="hall-calls"' in r.read().decode()
        assert again["hall"] != started["hall"]
        devices = api_get(f"{again['url']}/api/v1/devices", again["api_token"])
        assert {d["device"] for d in devices["items"]} >= {f"demo-c{n}" for n in range(1, 5)}
        # Its broker is closed to anyone the demo did not provision, as a site's Mosquitto is.
        assert mqtt_refuses(again["mqtt_port"], None, None)
        assert mqtt_refuses(again["mqtt_port"], "demo-c1", "a guess")
        second.proc.send_signal(signal.SIGINT)
        assert second.finish() == 0, "".join(second.stderr)
    finally:
        second.kill()

    # --fresh wipes it: a new store, a new login.
    third = subprocess.run(demo_args(data, "--fresh", "--rate", "0", "--duration", "0.5", "--counters", "1"),
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert third.returncode == 0, third.stderr
    fresh = next(r for r in map(json.loads, third.stdout.splitlines()) if r["event"] == "started")
    assert fresh["reused"] is False and fresh["store_counts"]["events"] == 0
    assert fresh["login"]["password"] != started["login"]["password"]


def mqtt_refuses(port: int, user: str | None, password: str | None) -> bool:
    import paho.mqtt.client as mqtt

    answered, reason = threading.Event(), []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="outsider", protocol=mqtt.MQTTv311,
                         reconnect_on_failure=False)
    client.on_connect = lambda _c, _u, _f, code, _p: (reason.append(code), answered.set())
    if user is not None:
        client.username_pw_set(user, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert answered.wait(10), "no CONNACK"
        return reason[0].is_failure
    finally:
        client.disconnect()
        client.loop_stop()


def test_demo_stops_cleanly_on_ctrl_c(tmp_path):
    demo = RunningDemo(demo_args(tmp_path / "d", "--rate", "60", "--seed", "2"))
    try:
        demo.wait_event(lambda r: r.get("event") == "stored" and r.get("type") == "rating", what="a rating")
        demo.proc.send_signal(signal.SIGINT)
        assert demo.finish() == 0, "".join(demo.stderr)
    finally:
        demo.kill()
    stopped = demo.events("counters_stopped")
    assert stopped and stopped[0]["offline"] == [1, 2, 3, 4], stopped
    assert set(stopped[0]["exit_codes"].values()) == {0}
    assert demo.events("summary")

    from broker.store import Store

    with Store.open(tmp_path / "d" / "hailong.db") as store:
        assert {d["device"]: d["online"] for d in store.devices()} == {
            **{f"demo-c{n}": False for n in range(1, 5)}, "demo-kiosk": False}


def test_demo_reports_a_taken_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(demo_args(tmp_path / "d", "--duration", "1", port=port),
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 1
    assert "already in use" in r.stderr and "--port" in r.stderr and str(port) in r.stderr
    assert not (tmp_path / "d").exists(), "nothing was started or created"


def test_interactive_keys_drive_counter_one(tmp_path):
    demo = RunningDemo(demo_args(tmp_path / "d", "--interactive", "--rate", "0", "--counters", "2"),
                       stdin=subprocess.PIPE)
    try:
        demo.wait_event(lambda r: r.get("event") == "started", what="started")

        def key(k):
            demo.proc.stdin.write(k + "\n")
            demo.proc.stdin.flush()

        key("n")
        demo.wait_event(lambda r: r.get("event") == "stored" and r["counter"] == 1 and r["type"] == "call",
                        what="counter 1's NEXT")
        key("4")
        rating = demo.wait_event(lambda r: r.get("event") == "stored" and r["counter"] == 1 and r["type"] == "rating",
                                 what="counter 1's rating")
        assert rating["score"] == 4
        key("q")
        assert demo.finish() == 0
        # Counter 2 had no citizens (--rate 0) and no keyboard: it stored only its officer's sign-in.
        assert {r["type"] for r in demo.events("stored") if r["counter"] == 2} <= {"signin"}
    finally:
        demo.kill()


def test_live_view_on_a_terminal_shows_url_login_and_counters(tmp_path):
    import os
    import pty
    import select

    master, slave = pty.openpty()
    args = [a for a in demo_args(tmp_path / "d", "--duration", "6", "--seed", "2", "--rate", "60") if a != "--headless"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.DEVNULL, cwd=ROOT)
    os.close(slave)
    screen = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the demo closed its terminal
                break
            if not chunk:
                break
            screen += chunk
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = screen.decode(errors="replace")
    assert "\x1b[" in text  # redrawn with ANSI, not JSON lines
    assert "http://127.0.0.1:" in text and "demo" in text
    assert "Nguyễn Thị Lan" in text  # counter 1's officer
    assert "Kiosk demo-kiosk: online yes" in text and "kiosk-printer.bin" in text
    assert '{"event"' not in text

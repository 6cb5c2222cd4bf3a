"""The kiosk as a real process (mock pins, printer bytes in a file) on a real Mosquitto.

The service here is a test double of the queue branch's `request` handling, on a paho client:
one daily sequence per queue from which it answers `take` requests and reserves blocks, and a
store where (site, date, ticket) is unique, as the contract demands of the real service.
"""
from __future__ import annotations

import json
import threading

import pytest

from common.periods import DEFAULT_TZ, today, zone
from protocol.events import validate_event
from protocol.messages import validate_command
from protocol.tickets import decode_request
from tests.support import DeviceProcess, FakeService

PREFIX = {"A": "A", "B": "B"}


class QueueDouble(FakeService):
    """Answers kiosk requests; stores each take once per (site, date, ticket), rejects clashes."""

    def __init__(self, broker, *, answer_takes: bool = True, block_size: int = 10):
        self.answer_takes = answer_takes
        self.block_size = block_size
        self.next_number: dict[tuple[str, str], int] = {}
        self.tickets: dict[tuple[str, str, str], dict] = {}
        self.clashes: list[dict] = []
        self.requests: list[dict] = []
        self._qlock = threading.Lock()
        super().__init__(broker, auto_ack=False)

    def _on_connect(self, client, userdata, flags, rc, props):
        super()._on_connect(client, userdata, flags, rc, props)
        client.subscribe([(f"{self.prefix}/+/request", 1)])

    def _on_message(self, client, userdata, msg):
        device, kind = msg.topic.split("/")[-2:]
        if kind == "request":
            self._request(device, decode_request(msg.payload))
            return
        super()._on_message(client, userdata, msg)
        if kind == "event":
            self._event(device, validate_event(json.loads(msg.payload)))

    def _numbers(self, queue: str, date: str, count: int) -> tuple[int, int]:
        with self._qlock:
            first = self.next_number.get((queue, date), 1)
            self.next_number[queue, date] = first + count
        return first, first + count - 1

    def _request(self, device: str, req: dict) -> None:
        self.requests.append(req)
        if req["op"] == "block":
            first, last = self._numbers(req["queue"], req["date"], self.block_size)
            cmd = {"cmd": "block", "req": req["req"], "queue": req["queue"], "prefix": PREFIX[req["queue"]],
                   "date": req["date"], "first": first, "last": last}
        elif self.answer_takes:
            day = today(zone(DEFAULT_TZ)).isoformat()  # the site's day, as the service's calendar has it
            n, _ = self._numbers(req["queue"], day, 1)
            ahead = sum(1 for (s, d, t) in self.tickets if d == day and t.startswith(PREFIX[req["queue"]]))
            cmd = {"cmd": "number", "req": req["req"], "queue": req["queue"], "ticket": f"{req['queue']}{n:03d}",
                   "ahead": ahead, "date": day}
        else:
            return
        self.client.publish(f"{self.prefix}/{device}/cmd", json.dumps(validate_command(cmd)), qos=1)

    def _event(self, device: str, ev: dict) -> None:
        rejected = []
        if ev["type"] == "take":
            key = (ev["site"], ev["date"], ev["ticket"])
            with self._qlock:
                known = self.tickets.get(key)
                if known is None:
                    self.tickets[key] = ev
                elif (known["ledger"], known["seq"]) != (ev["ledger"], ev["seq"]):
                    self.clashes.append(ev)
                    rejected = [{"seq": ev["seq"], "reason": "ticket already taken"}]
        if rejected:
            self.ack(device, ev["ledger"], [], rejected)
        else:
            self.ack(device, ev["ledger"], [ev["seq"]])


def kiosk_config(tmp_path, broker, *, device_id="kiosk-1", extra="", site="kien-thuy") -> tuple:
    data = tmp_path / device_id
    data.mkdir()
    printer = tmp_path / f"{device_id}.printer"
    path = tmp_path / f"{device_id}.toml"
    path.write_text(f"""
[device]
id = "{device_id}"
site = "{site}"
counter = "kiosk"
role = "kiosk"
data_dir = "{data}"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
backoff_min_s = 0.1
backoff_max_s = 0.5
[clock]
trust = "always"
[telemetry]
interval_s = 1
[kiosk]
centre = "Trung tâm Phục vụ hành chính công"
printer = "file"
printer_port = "{printer}"
printer_poll_s = 0.2
number_timeout_s = 1.0
block_low = 5
[[queues]]
id = "A"
name = "Đất đai"
button = 5
[[queues]]
id = "B"
name = "Tư pháp – Hộ tịch"
button = 6
{extra}""")
    return path, printer


@pytest.fixture
def start_kiosk(tmp_path, mosquitto):
    procs = []

    def start(device_id="kiosk-1", extra=""):
        cfg, printer = kiosk_config(tmp_path, mosquitto, device_id=device_id, extra=extra)
        p = DeviceProcess(cfg)
        p.printer_file = printer
        procs.append(p)
        p.wait_ready()
        return p

    yield start
    for p in procs:
        p.close()


def online(dev):
    return dev.wait("online", lambda v: v[-1] is True)


def blocks(dev, n):
    return dev.wait("block", lambda v: len(v) >= n)


def test_take_prints_the_services_number_after_the_take_is_stored(start_kiosk, mosquitto):
    service = QueueDouble(mosquitto)
    try:
        dev = start_kiosk()
        online(dev)
        blocks(dev, 2)  # low (none) at connect: a block for each queue
        dev.send("take A", "take B priority")
        printed = dev.wait("printed", lambda v: len(v) == 2)
        assert [(p["ticket"], p["queue"], p["ahead"], p["priority"], p["source"]) for p in printed] == [
            ("A011", "A", 0, False, "service"), ("B011", "B", 0, True, "service")]
        keys = [next(iter(r)) for r in dev.lines.items]
        # The promise: each ticket's take is stored before it is printed.
        stored = [e["ticket"] for e in dev.stored()]
        for p in printed:
            assert keys.index("stored") + stored.index(p["ticket"]) < keys.index("printed") + printed.index(p)
        take = [r for r in service.requests if r["op"] == "take"][1]
        assert take["priority"] is True and take["queue"] == "B"
        dev.wait("acked", lambda v: sum(len(a) for a in v) == 2)
        assert sorted(t for (_, _, t) in service.tickets) == ["A011", "B011"]
        assert dev.printer_file.read_bytes().count(b"\x1dv0") >= 2  # raster tickets reached the printer
        assert dev.quit() == 0
    finally:
        service.close()


def test_broker_stopped_while_five_tickets_print(start_kiosk, mosquitto):
    """Every printed number is unique for the site and day; each is stored once after the broker returns."""
    service = QueueDouble(mosquitto)
    try:
        dev = start_kiosk()
        online(dev)
        blocks(dev, 2)
        dev.send("take A")
        dev.wait("printed", lambda v: len(v) == 1)
        mosquitto.stop()
        dev.wait("online", lambda v: v[-1] is False)
        dev.send("take A", "take A priority", "take B", "take A", "take A")
        printed = dev.wait("printed", lambda v: len(v) == 6)
        offline = printed[1:]
        assert all(p["source"] == "block" for p in offline)
        assert [p["ticket"] for p in offline] == ["A001", "A002", "B001", "A003", "A004"]
        mosquitto.start()
        online(dev)
        dev.send("take A")  # back online: the service's own sequence goes on past the block
        printed = dev.wait("printed", lambda v: len(v) == 7)
        dev.wait("acked", lambda v: sum(len(a) for a in v) == 7, timeout=30)
        tickets = [p["ticket"] for p in printed]
        assert len(set(tickets)) == 7
        assert sorted(t for (_, _, t) in service.tickets) == sorted(tickets)
        assert service.clashes == []
        # Exactly once: every stored take arrived and is kept under one (ledger, seq).
        assert {(e["ledger"], e["seq"]) for e in service.tickets.values()} == {
            (e["ledger"], e["seq"]) for e in dev.stored()}
    finally:
        service.close()


def test_block_numbers_are_not_reused_after_a_restart(start_kiosk, mosquitto, tmp_path):
    service = QueueDouble(mosquitto, answer_takes=False)  # every take falls back after the timeout
    try:
        dev = start_kiosk()
        online(dev)
        blocks(dev, 2)
        dev.send("take A", "take A")
        dev.wait("printed", lambda v: len(v) == 2)
        assert dev.quit() == 0
        dev2 = DeviceProcess(tmp_path / "kiosk-1.toml")
        try:
            dev2.wait_ready()
            dev2.send("take A")
            (p,) = dev2.wait("printed")
            assert p["ticket"] == "A003" and p["source"] == "block"
        finally:
            dev2.close()
    finally:
        service.close()


def test_printer_missing_shows_refuses_and_reaches_telemetry(start_kiosk, mosquitto):
    service = QueueDouble(mosquitto)
    try:
        dev = start_kiosk()
        online(dev)
        dev.printer_file.unlink()  # unplugged
        dev.wait("printer", lambda v: v[-1] == "missing")
        dev.wait("display", lambda v: v[-1] == "noPr")
        service.telemetry.wait_for(lambda items: any(t.get("printer") == "missing" for _, t in items))
        dev.send("take A")
        dev.printer_file.touch()  # plugged in again
        dev.wait("printer", lambda v: v[-1] == "ok")
        assert dev.of("printed") == [] and not [r for r in service.requests if r["op"] == "take"]
        dev.send("take A")
        dev.wait("printed")
    finally:
        service.close()


def test_counter_noshow_and_idle_sign_over_mqtt(tmp_path, mosquitto):
    """The counter's side of the queue: a long RECALL is a `noshow` call; an idle answer shows the sign."""
    from tests.support import write_config

    service = FakeService(mosquitto)
    dev = DeviceProcess(write_config(tmp_path, mosquitto, extra="[staff]\nhold_noshow_s = 0.5\n"))
    try:
        dev.wait_ready()
        online(dev)
        dev.send("press next")
        call = service.received.wait_for(lambda items: [e for _, e in items if e["type"] == "call"])[0]
        service.send("dev-1", "cmd", {"cmd": "ticket", "ticket": "A012", "seq": call["seq"]})
        dev.wait("display", lambda v: v[-1] == "A012")
        dev.send("hold recall 0.8")
        noshow = service.received.wait_for(
            lambda items: [e for _, e in items if e["type"] == "call" and e["action"] == "noshow"])[0]
        assert noshow["ticket"] == "A012"
        service.send("dev-1", "cmd", {"cmd": "ticket", "ticket": "----", "seq": noshow["seq"], "idle": True})
        dev.wait("display", lambda v: v[-1] == "IdLE")
        assert [e["action"] for e in dev.stored() if e["type"] == "call"] == ["next", "noshow"]
    finally:
        dev.close()
        service.close()

"""The kiosk's runtime in-process: real ledger on disk, mock pins, printer bytes in a file, no broker."""
from __future__ import annotations

import json
import threading

import pytest
from gpiozero.pins.mock import MockFactory

from common.periods import DEFAULT_TZ, local_day, zone
from common.clock import now
from device.config import config_from_dict
from device.display import TextDisplay
from device.kiosk_hw import kiosk_panel
from device.kiosk_runtime import KioskRuntime
from device.ledger import Ledger, LedgerError
from device.printer import FileTransport
from tests.support import Waiter
from tests.test_device_runtime import OfflineUplink


def today() -> str:
    return local_day(int(now() * 1000), zone(DEFAULT_TZ))


@pytest.fixture
def kiosk(tmp_path):
    data = tmp_path / "data"
    printer = tmp_path / "lp0"
    printer.touch()
    cfg = config_from_dict({
        "device": {"id": "kiosk-1", "site": "s", "counter": "k", "data_dir": str(data), "role": "kiosk"},
        "mqtt": {"host": "127.0.0.1"},
        "clock": {"trust": "never"},
        "kiosk": {"printer": "file", "printer_port": str(printer), "printer_poll_s": 0.1, "status_led": 17},
        "queues": [{"id": "A", "name": "Đất đai", "button": 5}],
    })
    # A block the service reserved earlier, as the kiosk remembers it.
    data.mkdir()
    with Ledger.open(cfg.ledger_path) as ledger:
        ledger.set_meta("kiosk_blocks", json.dumps(
            {"A": {"date": today(), "prefix": "A", "ranges": [[41, 50]], "seen": [41]}}))
    records = Waiter()
    factory = MockFactory()
    rt = KioskRuntime(
        cfg, transport=FileTransport(printer),
        panel_factory=lambda on_input: kiosk_panel(cfg, on_input=on_input, pin_factory=factory),
        display=TextDisplay(4, on_change=lambda text: records.append({"display": text})),
        emit=records.append, uplink_factory=OfflineUplink,
    )
    thread = threading.Thread(target=rt.run, daemon=True)
    thread.start()
    assert rt.ready.wait(10)
    yield rt, records, factory, printer
    rt.stop()
    thread.join(10)


def printed(records):
    return [r["printed"] for r in records.items if "printed" in r]


def test_offline_press_prints_a_block_number_after_storing_it(kiosk):
    rt, records, factory, printer = kiosk
    rt.panel.click("A")
    (p,) = records.wait_for(lambda items: printed(records))
    assert (p["ticket"], p["source"], p["ahead"], p["name"]) == ("A041", "block", None, "Đất đai")
    (stored,) = [r["stored"] for r in records.items if "stored" in r]
    assert (stored["type"], stored["ticket"], stored["date"]) == ("take", "A041", today())
    assert printer.read_bytes().startswith(b"\x1b@\x1dv0") and len(printer.read_bytes()) == p["bytes"]
    assert json.loads(rt.ledger.get_meta("kiosk_blocks"))["A"]["ranges"] == [[42, 50]]


def test_a_refused_take_prints_nothing_and_keeps_its_number(kiosk):
    rt, records, factory, printer = kiosk
    working = rt.ledger.append

    def full(body, held=False, meta=()):
        raise LedgerError("database or disk is full")

    rt.ledger.append = full
    rt.panel.click("A")
    records.wait_for(lambda items: any("error" in r for r in items))
    records.wait_for(lambda items: [r for r in items if r.get("display") == " Err"])
    assert printer.read_bytes() == b""
    rt.ledger.append = working
    rt.panel.click("A")
    (p,) = records.wait_for(lambda items: printed(records))
    assert p["ticket"] == "A041"  # never printed nor stored, so still unused


def test_printer_missing_lights_the_alarm_led(kiosk):
    rt, records, factory, printer = kiosk
    printer.unlink()
    records.wait_for(lambda items: [r for r in items if r.get("printer") == "missing"])
    records.wait_for(lambda items: factory.pin(17).state is True)
    assert rt.telemetry()["printer"] == "missing"
    printer.touch()
    records.wait_for(lambda items: factory.pin(17).state is False and rt.printer.state == "ok")

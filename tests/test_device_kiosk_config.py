"""The kiosk's keys in device.toml: role, [kiosk], [[queues]] and their cross-key rules."""
from __future__ import annotations

from tests.config_helpers import problems_of, with_keys

from device.config import config_from_dict

KIOSK = {
    "device": {"id": "hl-kt-kiosk", "site": "kien-thuy", "counter": "kiosk", "data_dir": "/var/lib/hailong",
               "role": "kiosk"},
    "mqtt": {"host": "mqtt.example.vn"},
    "queues": [{"id": "A", "name": "Đất đai", "button": 5}, {"id": "B", "name": "Tư pháp", "button": 6}],
}


def problems_for(changes: dict) -> dict[str, str]:
    return problems_of(config_from_dict, with_keys(KIOSK, changes))


def test_kiosk_defaults():
    cfg = config_from_dict(KIOSK)
    assert cfg.device.role == "kiosk"
    k = cfg.kiosk
    assert (k.number_timeout_s, k.block_low, k.printer, k.printer_port, k.text) == (
        3.0, 5, "usb", "/dev/usb/lp0", "raster")
    assert [(q.id, q.name, q.button) for q in cfg.queues] == [("A", "Đất đai", 5), ("B", "Tư pháp", 6)]
    assert cfg.staff.hold_noshow_s == 1.5


def test_counter_stays_the_default_role():
    minimal = {k: v for k, v in KIOSK.items() if k != "queues"}
    minimal = with_keys(minimal, {"device.role": "counter"})
    del minimal["device"]["role"]
    assert config_from_dict(minimal).device.role == "counter"


def test_kiosk_needs_queues_with_unique_ids():
    assert "queues" in problems_for({"queues": []})
    dup = [{"id": "A", "name": "x", "button": 5}, {"id": "A", "name": "y", "button": 6}]
    assert "already used" in problems_for({"queues": dup})["queues[1].id"]


def test_queue_ids_follow_the_wire_rule():
    bad = [{"id": "A/1", "name": "x", "button": 5}]
    assert "queues[0].id" in problems_for({"queues": bad})


def test_kiosk_pins_may_not_be_shared():
    clash = [{"id": "A", "name": "x", "button": 27}]
    assert "kiosk.priority_button" in problems_for({"queues": clash})
    assert "display" in problems_for({"kiosk.status_led": 10})["kiosk.status_led"]


def test_kiosk_does_not_claim_the_counters_pins():
    # Pin 23 is the counter's NEXT by default; a kiosk does not use it.
    cfg = config_from_dict(with_keys(KIOSK, {"queues": [{"id": "A", "name": "x", "button": 23}]}))
    assert cfg.queues[0].button == 23


def test_queues_on_a_counter_are_refused():
    assert "queues" in problems_for({"device.role": "counter"})


def test_printer_choices():
    assert "kiosk.printer" in problems_for({"kiosk.printer": "wifi"})
    assert "kiosk.printer_usb_id" in problems_for({"kiosk.printer_usb_id": "0416-5011"})
    cfg = config_from_dict(with_keys(KIOSK, {"kiosk.printer": "serial", "kiosk.printer_port": "/dev/ttyUSB0"}))
    assert (cfg.kiosk.printer, cfg.kiosk.printer_baud) == ("serial", 19200)


def test_doctor_checks_a_kiosks_buttons_and_printer(tmp_path):
    from device.doctor import FAIL, PASS, check_gpio, check_printer

    printer = tmp_path / "lp0"
    cfg = config_from_dict(with_keys(KIOSK, {"kiosk.printer": "file", "kiosk.printer_port": str(printer)}))
    assert check_gpio(cfg, simulate=True) == (PASS, "2 queue buttons, priority")
    assert check_printer(cfg, simulate=False) == (FAIL, f"file printer at {printer}: missing")
    printer.touch()
    assert check_printer(cfg, simulate=False)[0] == PASS
    counter = config_from_dict(with_keys({k: v for k, v in KIOSK.items() if k != "queues"},
                                         {"device.role": "counter"}))
    assert check_printer(counter, simulate=False) == (PASS, "not a kiosk")

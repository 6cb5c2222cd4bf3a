"""The kiosk's hardware as its config describes it: queue buttons, priority button, printer.

The buttons reuse the counter's Panel (raw edges, mock pins under --simulate); only the
names differ: one per queue id, plus "priority". The printer-trouble LED is LED 1.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.panel import InputCallback, Panel, PanelConfigError
from device.printer import FileTransport, SerialTransport, find_usb_printer

if TYPE_CHECKING:  # pragma: no cover
    from gpiozero.pins import Factory

    from device.config import DeviceConfig

__all__ = ["KioskPanel", "kiosk_panel", "kiosk_transport", "simulated_printer_path"]


class KioskPanel(Panel):
    """Named buttons, an optional alarm LED (index 1) and buzzer; the Panel's methods otherwise."""

    def __init__(self, *, buttons: dict[str, int], led_pin: int | None, buzzer_pin: int | None,
                 pull_up: bool = True, bounce_s: float = 0.05, pin_factory: Factory | None = None,
                 on_input: InputCallback) -> None:
        if not buttons:
            raise PanelConfigError("a kiosk needs at least one queue button")
        from gpiozero import LED, Buzzer, DigitalInputDevice

        self._on_input = on_input
        self._pull_up = pull_up
        self._lock = threading.Lock()
        self._closed = False
        self._buttons: dict[str, Any] = {}
        self._leds: list[Any] = []
        self._buzzer = None
        bounce = bounce_s if bounce_s > 0 else None
        try:
            for name, pin in buttons.items():
                button = DigitalInputDevice(pin, pull_up=pull_up, bounce_time=bounce, pin_factory=pin_factory)
                self._buttons[name] = button
                button.when_activated = self._edge_handler(name, True)
                button.when_deactivated = self._edge_handler(name, False)
            if led_pin is not None:
                self._leds.append(LED(led_pin, pin_factory=pin_factory))
            if buzzer_pin is not None:
                self._buzzer = Buzzer(buzzer_pin, pin_factory=pin_factory)
        except BaseException:
            self._close_devices()
            raise

    @property
    def scale(self) -> int:
        return 0


def kiosk_panel(cfg: DeviceConfig, *, on_input: InputCallback, pin_factory: Factory | None = None) -> KioskPanel:
    buttons = {q.id: q.button for q in cfg.queues}
    buttons["priority"] = cfg.kiosk.priority_button
    return KioskPanel(buttons=buttons, led_pin=cfg.kiosk.status_led,
                      buzzer_pin=cfg.buzzer.pin if cfg.buzzer.enabled else None,
                      pull_up=cfg.pins.pull_up, bounce_s=cfg.pins.bounce_s, pin_factory=pin_factory,
                      on_input=on_input)


def simulated_printer_path(cfg: DeviceConfig) -> Path:
    """Under --simulate the ticket bytes go to a file: the configured one, else in data_dir."""
    k = cfg.kiosk
    return Path(k.printer_port) if k.printer == "file" else cfg.device.data_dir / "printer.bin"


def kiosk_transport(cfg: DeviceConfig, *, simulate: bool) -> Any:
    k = cfg.kiosk
    if simulate:
        path = simulated_printer_path(cfg)
        path.touch(exist_ok=True)  # the simulated printer is plugged in at start; delete it to unplug
        return FileTransport(path)
    if k.printer == "serial":
        return SerialTransport(k.printer_port, k.printer_baud)
    if k.printer == "usb" and k.printer_usb_id:
        found = find_usb_printer(k.printer_usb_id)
        return FileTransport(found or k.printer_port)
    return FileTransport(k.printer_port)

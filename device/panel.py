"""Buttons, button LEDs and buzzer of one counter, through gpiozero.

This adapter reports raw edges only: `on_input(name, pressed, t)` for every press
and release. Holds, long-presses and debouncing policy belong to the counter's state
machine, which times them from these monotonic timestamps. Buttons are therefore
gpiozero `DigitalInputDevice`s, not `Button`s: Button adds hold machinery with one
polling thread per button (idle CPU on the Pi, and ~0.1 s per button to close).

gpiozero is imported inside functions so this module imports without it.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from gpiozero import LED, Buzzer, DigitalInputDevice
    from gpiozero.pins import Factory

__all__ = [
    "Panel",
    "PanelError",
    "PanelConfigError",
    "PanelClosed",
    "UnknownButton",
    "UnknownLed",
    "NotSimulated",
    "default_pin_factory",
]

log = logging.getLogger(__name__)

InputCallback = Callable[[str, bool, float], None]


class PanelError(Exception):
    """Base class for panel errors."""


class PanelConfigError(PanelError, ValueError):
    """Impossible pin configuration (e.g. LED count differs from button count)."""


class PanelClosed(PanelError, RuntimeError):
    """The panel was used after close()."""


class UnknownButton(PanelError, KeyError):
    """No button with that name ("1".."N", "next", "recall")."""


class UnknownLed(PanelError, IndexError):
    """LED index outside 1..N."""


class NotSimulated(PanelError, RuntimeError):
    """press()/release() need gpiozero mock pins; real buttons are pressed by people."""


def default_pin_factory(simulate: bool) -> Factory | None:
    """MockFactory when simulating; otherwise None so gpiozero picks lgpio on a Pi."""
    if not simulate:
        return None
    from gpiozero.pins.mock import MockFactory

    return MockFactory()


def _switch(led: "LED", on: bool) -> None:
    if on:
        led.on()
    else:
        led.off()


class Panel:
    """The physical controls of one counter.

    Rating buttons are named "1".."N" from worst to best, plus "next" and "recall".
    `led_pins` is either empty (plain buttons) or one pin per rating button.
    """

    def __init__(self, *, rating_pins: list[int], led_pins: list[int], next_pin: int,
                 recall_pin: int, buzzer_pin: int | None, pull_up: bool = True,
                 bounce_s: float = 0.05, pin_factory: Factory | None = None,
                 on_input: InputCallback) -> None:
        if not rating_pins:
            raise PanelConfigError("need at least one rating button")
        if led_pins and len(led_pins) != len(rating_pins):
            raise PanelConfigError(
                f"{len(led_pins)} LED pins for {len(rating_pins)} rating buttons")
        from gpiozero import LED, Buzzer, DigitalInputDevice

        self._on_input = on_input
        self._pull_up = pull_up
        self._lock = threading.Lock()
        self._closed = False
        self._buttons: dict[str, DigitalInputDevice] = {}
        self._leds: list[LED] = []
        self._buzzer: Buzzer | None = None

        pins = {str(i): pin for i, pin in enumerate(rating_pins, start=1)}
        pins.update(next=next_pin, recall=recall_pin)
        bounce = bounce_s if bounce_s > 0 else None
        try:
            for name, pin in pins.items():
                button = DigitalInputDevice(pin, pull_up=pull_up, bounce_time=bounce,
                                            pin_factory=pin_factory)
                self._buttons[name] = button
                button.when_activated = self._edge_handler(name, True)
                button.when_deactivated = self._edge_handler(name, False)
            for pin in led_pins:  # a loop, not a comprehension: cleanup must see each LED
                self._leds.append(LED(pin, pin_factory=pin_factory))
            if buzzer_pin is not None:
                self._buzzer = Buzzer(buzzer_pin, pin_factory=pin_factory)
        except BaseException:
            # A pin already in use half-way through must not leave the earlier pins
            # reserved, or a retry in the same process could never succeed.
            self._close_devices()
            raise

    @property
    def button_names(self) -> tuple[str, ...]:
        return tuple(self._buttons)

    @property
    def scale(self) -> int:
        """Number of rating buttons (N)."""
        return len(self._buttons) - 2

    def _edge_handler(self, name: str, pressed: bool) -> Callable[[], None]:
        on_input = self._on_input

        def handler() -> None:
            # Runs on gpiozero's callback thread (lgpio's on a Pi): capture the time
            # first and hand off; anything slow here delays every other button.
            t = time.monotonic()
            try:
                on_input(name, pressed, t)
            except Exception:
                # An exception escaping into the pin library's thread could stop
                # further callbacks; losing one event is the lesser evil.
                log.exception("on_input failed for button %s pressed=%s", name, pressed)

        return handler

    # -- outputs -------------------------------------------------------------

    def set_led(self, index: int, on: bool) -> None:
        """Light (or not) the LED of rating button `index` (1..N); no-op without LEDs."""
        with self._lock:
            self._check_open()
            if not self._leds:
                return
            if not 1 <= index <= len(self._leds):
                raise UnknownLed(f"LED index {index} outside 1..{len(self._leds)}")
            _switch(self._leds[index - 1], on)

    def set_all_leds(self, on: bool) -> None:
        with self._lock:
            self._check_open()
            for led in self._leds:
                _switch(led, on)

    def leds_state(self) -> list[bool]:
        """Current LED states, index 0 = button "1"; empty without LEDs."""
        with self._lock:
            self._check_open()
            return [bool(led.is_lit) for led in self._leds]

    def beep(self, seconds: float = 0.05) -> None:
        """Sound the buzzer once for `seconds` without blocking; no-op without one.

        A beep during a beep restarts it (gpiozero stops the previous blink thread).
        """
        if seconds <= 0:
            raise PanelConfigError(f"beep length must be > 0, got {seconds}")
        with self._lock:
            self._check_open()
            if self._buzzer is not None:
                self._buzzer.beep(on_time=seconds, off_time=0, n=1, background=True)

    # -- simulation ----------------------------------------------------------

    def press(self, name: str) -> None:
        """Simulator: push button `name` (drives the mock pin to its active level)."""
        self._drive(name, active=True)

    def release(self, name: str) -> None:
        self._drive(name, active=False)

    def click(self, name: str) -> None:
        self.press(name)
        self.release(name)

    def _drive(self, name: str, *, active: bool) -> None:
        from gpiozero.pins.mock import MockPin

        # No self._lock here: MockFactory runs callbacks synchronously inside
        # drive_low(), and on_input may legitimately call set_led() from there.
        self._check_open()
        try:
            button = self._buttons[name]
        except KeyError:
            raise UnknownButton(name) from None
        pin: Any = button.pin
        if not isinstance(pin, MockPin):
            raise NotSimulated(f"button {name!r} is on a real pin ({pin!r})")
        # With pull-ups the button shorts the pin to GND, so "pressed" is low.
        if active == self._pull_up:
            pin.drive_low()
        else:
            pin.drive_high()

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        """Release every pin; safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_devices()

    def _close_devices(self) -> None:
        devices: list[Any] = [*self._buttons.values(), *self._leds]
        if self._buzzer is not None:
            devices.append(self._buzzer)
        for device in devices:
            try:
                device.close()
            except Exception:
                log.exception("closing %r failed", device)

    def _check_open(self) -> None:
        if self._closed:
            raise PanelClosed("panel is closed")

    def __enter__(self) -> Panel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

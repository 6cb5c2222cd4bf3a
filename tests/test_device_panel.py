"""Panel adapter against gpiozero's MockFactory: what the pins see and what reaches on_input."""
from __future__ import annotations

import threading
import time

import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from device.panel import (
    NotSimulated,
    Panel,
    PanelClosed,
    PanelConfigError,
    UnknownButton,
    UnknownLed,
    default_pin_factory,
)

RATING = [5, 6, 13, 19, 26]
LEDS = [12, 16, 20, 21, 25]
NEXT, RECALL, BUZZER = 23, 24, 18


@pytest.fixture
def factory():
    saved = Device.pin_factory
    f = MockFactory()
    try:
        yield f
    finally:
        f.reset()
        Device.pin_factory = saved


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, bool, float]] = []

    def __call__(self, name: str, pressed: bool, t: float) -> None:
        self.events.append((name, pressed, t))

    def edges(self) -> list[tuple[str, bool]]:
        return [(n, p) for n, p, _ in self.events]


def make_panel(factory, on_input, **kw) -> Panel:
    args = dict(rating_pins=RATING, led_pins=LEDS, next_pin=NEXT, recall_pin=RECALL,
                buzzer_pin=BUZZER, pin_factory=factory, on_input=on_input)
    args.update(kw)
    return Panel(**args)


def wait_until(predicate, timeout: float = 2.0) -> bool:
    tick = threading.Event()  # never set: only used for bounded waits
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        tick.wait(0.005)
    return True


def test_every_button_reports_press_and_release_in_order(factory):
    rec = Recorder()
    panel = make_panel(factory, rec)
    assert panel.button_names == ("1", "2", "3", "4", "5", "next", "recall")
    assert panel.scale == 5

    pins = dict(zip(["1", "2", "3", "4", "5", "next", "recall"], RATING + [NEXT, RECALL]))
    before = time.monotonic()
    for name, pin in pins.items():
        factory.pin(pin).drive_low()   # pull-up wiring: pressed shorts to GND
        factory.pin(pin).drive_high()
    after = time.monotonic()

    assert rec.edges() == [(n, p) for n in pins for p in (True, False)]
    times = [t for _, _, t in rec.events]
    assert times == sorted(times) and before <= times[0] and times[-1] <= after
    panel.close()


def test_simulated_press_release_and_click(factory):
    rec = Recorder()
    panel = make_panel(factory, rec)
    panel.press("next")
    panel.release("next")
    panel.click("3")
    assert rec.edges() == [("next", True), ("next", False), ("3", True), ("3", False)]
    with pytest.raises(UnknownButton):
        panel.click("6")
    with pytest.raises(KeyError):
        panel.press("ok")
    panel.close()


def test_pull_down_wiring_inverts(factory):
    rec = Recorder()
    panel = make_panel(factory, rec, pull_up=False)
    factory.pin(RATING[0]).drive_high()
    factory.pin(RATING[0]).drive_low()
    panel.click("recall")
    assert factory.pin(RECALL).state is False  # idles low with pull-down
    assert rec.edges() == [("1", True), ("1", False), ("recall", True), ("recall", False)]
    panel.close()


def test_callback_errors_do_not_escape_into_the_pin_library(factory):
    def boom(name, pressed, t):
        raise RuntimeError("consumer bug")

    panel = make_panel(factory, boom)
    panel.click("1")  # would raise here if the exception escaped
    panel.close()


def test_leds_drive_their_pins(factory):
    panel = make_panel(factory, Recorder())
    panel.set_led(2, True)
    assert [factory.pin(p).state for p in LEDS] == [False, True, False, False, False]
    assert panel.leds_state() == [False, True, False, False, False]

    panel.set_all_leds(True)
    assert all(factory.pin(p).state for p in LEDS)
    panel.set_led(5, False)
    assert panel.leds_state() == [True, True, True, True, False]
    panel.set_all_leds(False)
    assert not any(factory.pin(p).state for p in LEDS)

    with pytest.raises(UnknownLed):
        panel.set_led(6, True)
    with pytest.raises(IndexError):
        panel.set_led(0, True)
    panel.close()


def test_panel_without_leds_or_buzzer_ignores_them(factory):
    panel = make_panel(factory, Recorder(), led_pins=[], buzzer_pin=None)
    panel.set_led(1, True)
    panel.set_all_leds(True)
    panel.beep()
    assert panel.leds_state() == []
    panel.close()


def test_led_count_must_match_buttons(factory):
    with pytest.raises(PanelConfigError):
        make_panel(factory, Recorder(), led_pins=LEDS[:3])


def test_beep_toggles_buzzer_pin_without_blocking(factory):
    panel = make_panel(factory, Recorder())
    pin = factory.pin(BUZZER)
    pin.clear_states()

    panel.beep(0.05)

    def went_on_then_off() -> bool:
        states = [s.state for s in pin.states]
        return True in states and states[-1] is False and states.index(True) > 0

    assert wait_until(went_on_then_off)
    panel.close()


def test_close_releases_pins_for_a_second_panel(factory):
    rec = Recorder()
    first = make_panel(factory, rec)
    first.close()
    first.close()  # idempotent
    with pytest.raises(PanelClosed):
        first.set_led(1, True)

    second = make_panel(factory, rec)
    second.click("5")
    assert rec.edges() == [("5", True), ("5", False)]
    second.close()


def test_failed_construction_releases_earlier_pins(factory):
    from gpiozero import GPIOPinInUse

    with pytest.raises(GPIOPinInUse):
        make_panel(factory, Recorder(), recall_pin=RATING[0])  # pin used twice
    make_panel(factory, Recorder()).close()  # nothing left reserved


def test_press_requires_mock_pins(factory):
    from gpiozero.pins.mock import MockPin

    panel = make_panel(factory, Recorder())
    # Swap in a non-mock pin object to stand for a real (lgpio) pin.
    button = panel._buttons["1"]
    real_pin = button._pin
    button._pin = object()
    try:
        with pytest.raises(NotSimulated):
            panel.press("1")
        with pytest.raises(RuntimeError):
            panel.release("1")
    finally:
        button._pin = real_pin
    assert isinstance(button.pin, MockPin)
    panel.close()


def test_default_pin_factory():
    assert default_pin_factory(False) is None
    assert isinstance(default_pin_factory(True), MockFactory)


def test_failed_led_releases_earlier_leds(factory):
    from gpiozero import GPIOPinInUse

    with pytest.raises(GPIOPinInUse):
        make_panel(factory, Recorder(), led_pins=[12, 16, 12, 21, 25])
    make_panel(factory, Recorder()).close()

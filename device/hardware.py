"""The counter's panel and display as its config describes them, built in this one place.

`hailong device run`, `hailong device doctor` and the provisioning agent's self-test all
drive the same buttons, LEDs, buzzer and display; building them here keeps every setting
(e.g. `pins.bounce_s`) reaching every one of them.

Driver libraries are still imported only when a device is built (see panel.py, display.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from device.display import Display, make_display
from device.panel import InputCallback, Panel

if TYPE_CHECKING:  # pragma: no cover
    from gpiozero.pins import Factory

    from device.config import DeviceConfig

__all__ = ["counter_display", "counter_panel"]


def counter_panel(cfg: DeviceConfig, *, on_input: InputCallback, pin_factory: Factory | None = None) -> Panel:
    """The rating buttons (as many as the scale), their LEDs, NEXT, RECALL and the buzzer if enabled."""
    p, scale = cfg.pins, cfg.rating.scale
    return Panel(
        rating_pins=list(p.rating_buttons[:scale]), led_pins=list(p.rating_leds[:scale]),
        next_pin=p.next_button, recall_pin=p.recall_button,
        buzzer_pin=cfg.buzzer.pin if cfg.buzzer.enabled else None,
        pull_up=p.pull_up, bounce_s=p.bounce_s, pin_factory=pin_factory, on_input=on_input,
    )


def counter_display(cfg: DeviceConfig, *, simulate: bool,
                    on_change: Callable[[str], None] | None = None) -> Display:
    """The configured display; with `simulate`, a text display reporting through `on_change`."""
    d = cfg.display
    return make_display(
        d.kind, width=cfg.display_width, digits=d.digits, cascaded=d.cascaded, spi_port=d.spi_port,
        spi_device=d.spi_device, brightness=d.brightness, rotate=d.rotate, simulate=simulate,
        on_change=on_change,
    )

"""Wires the kiosk together: the counter's runtime (ledger, outbox, uplink, telemetry) driving
the kiosk's state machine, plus the `request` topic and the printer.

The order of a take is the runtime's to keep: the state machine returns Store before Print,
and `_apply` stops at a Store the ledger refused, so no ticket is printed without its event.
The printer prints on its own thread; its outcomes and status changes come back through the
same input queue as button presses.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from common.periods import DEFAULT_TZ, local_day, zone
from device.kiosk import Alarm, Kiosk, KioskSettings, Print, Request
from device.printer import Printer
from device.escpos import Ticket, encode, find_font
from device.runtime import DeviceRuntime, _Item
from protocol import ProtocolError
from protocol.codec import encode as encode_json
from protocol.tickets import validate_request

log = logging.getLogger("hailong.kiosk")


def kiosk_settings(cfg) -> KioskSettings:
    k = cfg.kiosk
    return KioskSettings(
        queues={q.id: q.name for q in cfg.queues}, number_timeout_s=k.number_timeout_s,
        block_low=k.block_low, priority_window_s=k.priority_window_s, width=cfg.display_width,
    )


class KioskRuntime(DeviceRuntime):
    def __init__(self, cfg, *, transport: Any, **kwargs):
        self._tz = zone(DEFAULT_TZ)  # Vietnam has one zone; the service's site calendar agrees
        super().__init__(cfg, **kwargs)
        k = cfg.kiosk
        self.printer = Printer(
            transport, poll_s=k.printer_poll_s,
            on_printed=lambda info, state: self._q.put(_Item("printed", (info, state))),
            on_state=lambda state: self._q.put(_Item("printer", (state,))))
        self._font = find_font(k.font) if k.text == "raster" else None
        if k.text == "raster" and self._font is None:
            log.warning("no TrueType font found (install fonts-dejavu-core or set kiosk.font): "
                        "tickets use Pillow's own font, which may lack Vietnamese letters")
            self.emit({"warning": "no ticket font: install fonts-dejavu-core or set kiosk.font"})

    def _machine(self, cfg) -> Kiosk:
        return Kiosk(kiosk_settings(cfg), today=self.today, blocks=self.ledger.get_meta("kiosk_blocks"))

    def today(self) -> str:
        return local_day(self.clock.wall_ms(), self._tz)

    def run(self) -> None:
        self.printer.start()
        super().run()

    # ----- inputs -----------------------------------------------------------------------

    def _handle(self, item: _Item) -> None:
        now = self.clock.monotonic()
        if item.kind == "printer":
            self._printer_state(item.args[0], now)
        elif item.kind == "printed":
            info, state = item.args
            if state == "ok":
                self.emit({"printed": info})
            else:
                self.emit({"not_printed": info, "printer": state})
            self._feed(self.counter.printed, info, state, now)
        else:
            super()._handle(item)

    def _printer_state(self, state: str, now: float) -> None:
        if state != "ok":
            log.error("printer: %s", state)
        self.emit({"printer": state})
        self._feed(self.counter.printer_state, state, now)

    def _command(self, cmd: dict, now: float) -> None:
        kind = cmd["cmd"]
        if kind == "number":
            self._feed(self.counter.number, cmd, now)
        elif kind == "block":
            self.emit({"block": {k: cmd[k] for k in ("queue", "prefix", "date", "first", "last")}})
            self._feed(self.counter.block, cmd, now)
        elif kind == "identify":
            pass  # a kiosk has no display animation for it yet
        else:
            log.info("kiosk ignores command %s", kind)

    # ----- effects ----------------------------------------------------------------------

    def _effect(self, e) -> None:
        if isinstance(e, Request):
            try:
                payload = encode_json(validate_request(e.body))
            except ProtocolError as err:  # e.g. a block for 1970 before NTP set the clock
                log.error("not sending request %r: %s", e.body, err)
                return
            if not self.uplink.publish(self.topics.request, payload, qos=1):
                log.warning("request %s not sent (offline): the kiosk's timeout takes over", e.body["op"])
        elif isinstance(e, Print):
            self._print(e.ticket)
        elif isinstance(e, Alarm):
            self.panel.set_all_leds(e.on)
        else:
            super()._effect(e)

    def _print(self, info: dict) -> None:
        k = self.cfg.kiosk
        when = datetime.fromtimestamp(self.clock.wall_ms() / 1000, self._tz)
        ticket = Ticket(centre=k.centre or self.cfg.device.site, queue_name=info["name"], ticket=info["ticket"],
                        ahead=info["ahead"], priority=info["priority"], when=when.strftime("%H:%M  %d/%m/%Y"))

        def draw() -> bytes:  # on the printer's thread: a raster takes a Pi Zero a few hundred ms
            return encode(ticket, mode=k.text, code_page=k.code_page, width=k.paper_dots, font=self._font)

        self.printer.print(draw, {**info, "time": when.strftime("%H:%M")})

    def telemetry(self) -> dict:
        t = super().telemetry()
        t["printer"] = self.printer.state or "missing"
        return t

    def _shutdown(self) -> None:
        try:
            self.printer.stop()
        finally:
            super()._shutdown()

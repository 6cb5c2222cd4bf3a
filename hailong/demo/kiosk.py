"""The demo's ticket kiosk: the real kiosk firmware as a child process, and the citizens at it.

The kiosk is `hailong device run --simulate` with `[device] role = "kiosk"` (hailong.demo.config.
kiosk_config): provisioned like a counter, it asks the service for each number, stores the `take`
event in its ledger, then prints; offline or unanswered, it prints from a block the service
reserved for it. Its ESC/POS bytes go to a file in the data folder. Citizens type `take A` or
`take A priority` into its stdin; each `printed` line it writes is a ticket in a citizen's hand.
"""
from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path

from hailong.demo.config import KIOSK, QUEUES
from hailong.demo.firmware import Firmware

__all__ = ["Kiosk", "take_tickets"]

PRIORITY_SHARE = 0.1  # elderly, disabled, pregnant, with small children


class Kiosk(Firmware):
    """The kiosk's firmware; `on_ticket(record)` for each ticket printed (or not: `printed` False)."""

    def __init__(self, config: Path, on_ticket: Callable[[dict], None]):
        self.device = KIOSK
        self.printer = "ok"
        self.printed = 0
        self.last: dict | None = None
        self._on_ticket = on_ticket
        super().__init__("kiosk", config)

    def _line(self, rec: dict) -> None:
        if "printed" in rec:
            self.printed += 1
            self.last = rec["printed"]
            self._on_ticket({**rec["printed"], "printed": True})
        elif "not_printed" in rec:
            self.printer = rec.get("printer", self.printer)
            self._on_ticket({**rec["not_printed"], "printed": False, "printer": self.printer})
        elif "printer" in rec:
            self.printer = rec["printer"]

    def take(self, queue_id: str, priority: bool) -> bool:
        """A citizen presses the queue's button (after the priority button)."""
        return self.send(f"take {queue_id}" + (" priority" if priority else ""))


def take_tickets(kiosk: Kiosk, rng: random.Random, per_minute: float, stop: threading.Event,
                 emit: Callable[[dict], None]) -> None:
    """Citizens arrive at about `per_minute` and each takes a ticket, until `stop`."""
    names, weights = [q[0] for q in QUEUES], [q[3] for q in QUEUES]
    while not stop.wait(rng.expovariate(per_minute / 60.0)):
        if not kiosk.take(rng.choices(names, weights)[0], rng.random() < PRIORITY_SHARE):
            emit({"event": "error", "device": KIOSK, "error": "kiosk process ended"})
            return

"""One simulated counter: the real firmware (`hailong device run --simulate`) as a child process."""
from __future__ import annotations

from pathlib import Path

from hailong.demo.config import device_id
from hailong.demo.firmware import Firmware


class Counter(Firmware):
    """One counter's firmware, its stored events turned into demo events."""

    def __init__(self, n: int, config: Path, officer: dict, on_event):
        self.n = n
        self.device = device_id(n)
        self.officer = officer
        self.display = ""
        self._on_event = on_event
        super().__init__(f"counter-{n}", config)

    def _line(self, rec: dict) -> None:
        if "display" in rec:
            self.display = rec["display"]
        elif "stored" in rec:
            self._on_event(self, "stored", rec["stored"])
        elif "updated" in rec:
            self._on_event(self, "updated", rec["updated"])

"""--headless: one JSON object per line on stdout, for scripts and tests."""
from __future__ import annotations

import json
import sys
import threading


class Output:
    """Writes records as JSON lines when headless; silent otherwise (the live view owns the screen)."""

    def __init__(self, headless: bool):
        self.headless = headless
        self._lock = threading.Lock()

    def emit(self, record: dict) -> None:
        if not self.headless:
            return
        with self._lock:
            try:
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                pass

"""A device's real firmware (`hailong device run --simulate`) as a child process of the demo.

Commands go in on its stdin, one per line; its JSON lines come back on a reader thread. What every
device says (ready, online, stored, acked) is kept here; a counter or a kiosk reads the rest.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path


class Firmware:
    """One device's firmware process; subclasses handle their own lines in `_line`."""

    def __init__(self, name: str, config: Path):
        self.name = name
        self.config = config
        self.online = False
        self.ready = threading.Event()
        self.connected = threading.Event()
        self.stored_seqs: set[int] = set()
        self.acked_seqs: set[int] = set()
        self.ledger: str | None = None
        self._lock = threading.Lock()
        self.down = threading.Event()  # killed for the staged outage (hailong.demo.outage)
        self._spawn()

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hailong.cli", "device", "run", "--simulate", "--config", str(self.config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops its devices itself
        )
        self._reader = threading.Thread(target=self._read, name=self.name, daemon=True)
        self._reader.start()

    def kill(self) -> None:
        """Cut the device's power, as it were: SIGKILL, no goodbye; its ledger keeps what it stored."""
        self.down.set()
        self.online = False
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(5)

    def restart(self) -> None:
        """Power back: the same config and ledger; what was not acked before is sent again."""
        self._spawn()
        self.connected.clear()
        self.connected.wait(20)
        self.down.clear()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(rec, dict):
                continue
            if "stored" in rec:
                with self._lock:  # a held low rating is sent (and acked) once its reason is settled
                    self.ledger = rec["stored"]["ledger"]
                    self.stored_seqs.add(rec["stored"]["seq"])
            elif "acked" in rec:
                with self._lock:
                    self.acked_seqs.update(rec["acked"])
            elif "online" in rec:
                self.online = bool(rec["online"])
                if self.online:
                    self.connected.set()
            elif "ready" in rec:
                self.ready.set()
            self._line(rec)

    def _line(self, rec: dict) -> None:
        """One JSON line from the firmware, after the common bookkeeping above."""

    def send(self, command: str) -> bool:
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, ValueError, OSError):
            return False

    def unacked(self) -> int:
        with self._lock:
            return len(self.stored_seqs - self.acked_seqs)

    def quit(self, timeout: float = 15) -> int | None:
        self.send("quit")
        try:
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)
        finally:
            self._reader.join(5)

"""One simulated counter: the real firmware (`hailong device run --simulate`) as a child process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from hailong.demo.config import device_id


class Counter:
    """One counter's firmware as a child process, its JSON lines turned into demo events."""

    def __init__(self, n: int, config: Path, officer: dict, on_event):
        self.n = n
        self.device = device_id(n)
        self.officer = officer
        self.display = ""
        self.online = False
        self.ready = threading.Event()
        self.connected = threading.Event()
        self.stored_seqs: set[int] = set()
        self.acked_seqs: set[int] = set()
        self.ledger: str | None = None
        self._lock = threading.Lock()
        self._on_event = on_event
        self.config = config
        self.down = threading.Event()  # killed for the staged outage (hailong.demo.outage): citizens wait
        self._spawn()

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hailong.cli", "device", "run", "--simulate", "--config", str(self.config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops the counters itself
        )
        self._reader = threading.Thread(target=self._read, name=f"counter-{self.n}", daemon=True)
        self._reader.start()

    def kill(self) -> None:
        """Cut the counter's power, as it were: SIGKILL, no goodbye; its ledger keeps what it stored."""
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
            if "display" in rec:
                self.display = rec["display"]
            elif "stored" in rec:
                ev = rec["stored"]
                with self._lock:  # a held low rating is sent (and acked) once its reason is settled
                    self.ledger = ev["ledger"]
                    self.stored_seqs.add(ev["seq"])
                self._on_event(self, "stored", ev)
            elif "updated" in rec:
                self._on_event(self, "updated", rec["updated"])
            elif "acked" in rec:
                with self._lock:
                    self.acked_seqs.update(rec["acked"])
            elif "online" in rec:
                self.online = bool(rec["online"])
                if self.online:
                    self.connected.set()
            elif "ready" in rec:
                self.ready.set()

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

"""A real Mosquitto for tests: free loopback port, config in a temp dir, stop/restart mid-test."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError("mosquitto not found: `make test` installs it (apt-get mosquitto)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, up: bool, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        # Polling a socket is the only readiness signal mosquitto gives.
        time.sleep(0.02)
    raise TimeoutError(f"mosquitto on port {port} did not become {'ready' if up else 'free'}")


class Mosquitto:
    """One mosquitto process. `extra` lines are appended to its config (ACLs, passwords...)."""

    def __init__(self, workdir: Path, extra: str = "", port: int | None = None, anonymous: bool = True):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.extra = extra
        self.anonymous = anonymous
        self.proc: subprocess.Popen | None = None
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"

    def write_config(self) -> None:
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
            # As root, mosquitto would drop to its own user and fail to read our 0700 temp dirs.
            + ("user root\n" if os.geteuid() == 0 else "")
            +
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            # Default is 1000 and drops silently beyond it; tests buffer more than that.
            "max_queued_messages 100000\n"
            "max_inflight_messages 0\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            + self.extra
        )

    def start(self) -> "Mosquitto":
        if self.proc and self.proc.poll() is None:
            return self
        self.write_config()
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.conf)], stdout=logf, stderr=logf
        )
        logf.close()
        try:
            wait_port(self.port, up=True)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto failed to start:\n{self.log.read_text()}")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        wait_port(self.port, up=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def reload(self) -> None:
        """SIGHUP: re-read password and ACL files."""
        import signal

        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

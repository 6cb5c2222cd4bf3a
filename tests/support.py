"""Test peers for device tests: a stand-in central service over real MQTT, and a device process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent


class Waiter:
    """A list that other threads append to, with `wait_for(predicate)` instead of sleeping."""

    def __init__(self, dead=lambda items: False):
        self.items: list = []
        self._cond = threading.Condition()
        self._dead = dead  # no point waiting any longer (the process exited)

    def append(self, item) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self.items)
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0 or self._dead(self.items):
                    raise AssertionError(f"gave up waiting for {what}; last items: {self.items[-10:]}")
                self._cond.wait(left)


class FakeService:
    """Subscribes to device events like the central service and acks them (idempotently).

    `auto_ack=False` lets a test hold acks back. `received` keeps every delivery, duplicates included.
    """

    def __init__(self, broker, prefix: str = "hailong/v1", *, auto_ack: bool = True,
                 client_id: str = "test-service", username: str | None = None, password: str | None = None):
        self.prefix = prefix
        self.auto_ack = auto_ack
        self.received = Waiter()   # (topic, event dict)
        self.status = Waiter()     # (device, payload dict)
        self.telemetry = Waiter()
        self.committed: dict[tuple, dict] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        # A persistent session, as the real service has: events published while we reconnect wait for us.
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("fake service could not subscribe")

    def _on_connect(self, client, userdata, flags, rc, props):
        client.subscribe([(f"{self.prefix}/+/event", 1), (f"{self.prefix}/+/status", 1),
                          (f"{self.prefix}/+/telemetry", 0)])

    def _on_message(self, client, userdata, msg):
        device, kind = msg.topic.split("/")[-2:]
        data = json.loads(msg.payload) if msg.payload else None
        if kind == "status":
            self.status.append((device, data))
        elif kind == "telemetry":
            self.telemetry.append((device, data))
        elif kind == "event":
            with self._lock:
                key = (data["device"], data["ledger"], data["seq"])
                self.committed.setdefault(key, data)
            self.received.append((msg.topic, data))
            if self.auto_ack:
                self.ack(device, data["ledger"], [data["seq"]])

    def ack(self, device: str, ledger: str, seqs, rejected=()):
        payload = {"ledger": ledger, "seqs": list(seqs)}
        if rejected:
            payload["rejected"] = list(rejected)
        self.client.publish(f"{self.prefix}/{device}/ack", json.dumps(payload), qos=1)

    def send(self, device: str, kind: str, payload, retain: bool = False):
        data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        self.client.publish(f"{self.prefix}/{device}/{kind}", data, qos=1, retain=retain).wait_for_publish(5)

    def events(self):
        return [e for _, e in self.received.items]

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def write_config(tmp: Path, broker, *, device_id: str = "dev-1", extra: str = "", data_dir: Path | None = None,
                 port: int | None = None, mqtt: str = "", counter: str = "3") -> Path:
    """A device config for `broker`; `mqtt` adds lines to [mqtt], `extra` adds whole sections."""
    data_dir = data_dir or tmp / "data"
    path = tmp / f"{device_id}.toml"
    path.write_text(
        "[device]\n"
        f'id = "{device_id}"\nsite = "kien-thuy"\ncounter = "{counter}"\ndata_dir = "{data_dir}"\n'
        "[mqtt]\n"
        f'host = "127.0.0.1"\nport = {port or broker.port}\n'
        "backoff_min_s = 0.1\nbackoff_max_s = 0.5\n"
        + mqtt +
        "[clock]\ntrust = \"always\"\n"
        + extra
    )
    return path


class DeviceProcess:
    """`hailong device run --simulate` as a real child process, its JSON lines collected."""

    def __init__(self, config: Path | None, *, env: dict | None = None, argv: list[str] | None = None):
        """`argv`: another way to start the same command (an installed copy, in an arm64 root)."""
        self.stderr = Waiter()
        self.lines = Waiter(dead=lambda items: bool(items) and "eof" in items[-1])
        self.proc = subprocess.Popen(
            argv or [sys.executable, "-m", "hailong.cli", "device", "run", "--simulate", "--config", str(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1, cwd=ROOT, env={**os.environ, **(env or {})},
        )
        self._out = threading.Thread(target=self._read_stdout, daemon=True)
        self._err = threading.Thread(target=self._read_stderr, daemon=True)
        self._out.start()
        self._err.start()

    def _read_stdout(self):
        for line in self.proc.stdout:
            line = line.strip()
            if line:
                try:
                    self.lines.append(json.loads(line))
                except json.JSONDecodeError:
                    self.lines.append({"garbage": line})
        self.lines.append({"eof": True})

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.items

    def send(self, *commands: str) -> None:
        for c in commands:
            self.proc.stdin.write(c + "\n")
        self.proc.stdin.flush()

    def of(self, key: str) -> list:
        return [r[key] for r in self.lines.items if key in r]

    def wait(self, key: str, predicate=lambda values: True, timeout: float = 15.0):
        try:
            return self.lines.wait_for(
                lambda items: (lambda vs: vs if vs and predicate(vs) else None)([r[key] for r in items if key in r]),
                timeout, what=key,
            )
        except AssertionError as e:
            tail = "\n".join(self.stderr_lines[-30:])
            raise AssertionError(f"{e}\n--- device stderr ---\n{tail}") from None

    def wait_ready(self, timeout: float = 15.0):
        return self.wait("ready", timeout=timeout)

    def stored(self) -> list[dict]:
        return self.of("stored")

    def quit(self, timeout: float = 15.0) -> int:
        try:
            self.send("quit")
        except (BrokenPipeError, ValueError):
            pass
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._out.join(5)

    def close(self):
        if self.proc.poll() is None:
            self.kill()


def eventually(probe, timeout: float = 20.0, what: str = "condition"):
    """Poll `probe` until it returns something truthy (returned), for state with nothing to wait on:
    another process's, or a broker's. AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        pause.wait(0.05)

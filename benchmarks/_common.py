"""Shared helpers for the device benchmarks: machine facts, where to put the ledger,
percentiles, device configs, a device child process with timestamped output, and a
stand-in central service that acks the way the real one will (group commit).

Run as a script it is that stand-in service in its own process (so its work does not
compete with the device for the GIL in the in-process latency benchmark):

    python benchmarks/_common.py acker --port 1883 [--mode batch|per-event] [--answer-next]

It prints one JSON line {"subscribed": true} once it listens, and a final JSON line of
counters when stdin reaches EOF.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `tests` and the project packages, when run as a script
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from tests.support import DeviceProcess  # noqa: E402

PREFIX = "hailong/v1"
RAM_FILESYSTEMS = {"tmpfs", "ramfs", "devtmpfs", "overlay-tmpfs"}


# ----- machine -----------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def machine_info() -> dict:
    cpu = "unknown"
    fields: dict[str, str] = {}
    for line in _read("/proc/cpuinfo").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    # x86: "model name"; a Raspberry Pi: "Model" (the board) and "Hardware" (the SoC).
    for key in ("model name", "model", "hardware", "cpu model"):
        if fields.get(key) and not fields[key].isdigit():
            cpu = fields[key]
            break
    mem_kib = 0
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    os_name = platform.system()
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.split("=", 1)[1].strip().strip('"')
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "usable_cores": usable,
        "ram_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "os": os_name,
        "kernel": platform.release(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def filesystem_of(path: Path) -> dict:
    """Mount point, filesystem type and source device holding `path` (from mountinfo)."""
    real = os.path.realpath(path)
    best = {"mount": "/", "fstype": "unknown", "source": "unknown"}
    best_len = -1
    for line in _read("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 2:
            continue
        mount = fields[4].replace("\\040", " ")
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= best_len:
            best_len = len(mount)
            best = {"mount": mount, "fstype": rfields[0], "source": rfields[1]}
    return best


def describe_fs(fs: dict) -> str:
    return f"{fs['fstype']} on {fs['source']} (mounted at {fs['mount']})"


def bench_dir(explicit: str | None = None) -> tuple[Path, dict]:
    """A fresh temporary directory on a real disk (never tmpfs), and its filesystem."""
    if explicit:
        candidates = [Path(explicit)]
    else:
        candidates = [Path(tempfile.gettempdir()), Path("/var/tmp"), ROOT / ".bench"]
    for base in candidates:
        try:
            base.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        fs = filesystem_of(base)
        if fs["fstype"] in RAM_FILESYSTEMS and not explicit:
            continue  # a tmpfs fsync costs nothing and would flatter the numbers
        if os.access(base, os.W_OK):
            return Path(tempfile.mkdtemp(prefix="hailong-bench-", dir=base)), fs
    raise RuntimeError(f"no writable on-disk directory among {candidates}")


def print_machine(info: dict, fs: dict | None = None, ledger_dir: Path | None = None) -> None:
    print(f"machine : {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
          f"{info['ram_gib']} GiB RAM")
    print(f"software: Python {info['python']}, {info['os']}, kernel {info['kernel']}")
    if fs is not None:
        where = f" in {ledger_dir}" if ledger_dir else ""
        print(f"ledger  : {describe_fs(fs)}{where}")
    print(f"date    : {info['date']}")


# ----- numbers -----------------------------------------------------------------------


def percentile(values, p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    s = sorted(values)
    if not s:
        raise ValueError("no values")
    k = max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))
    return s[int(k)]


def summary(values) -> dict:
    values = list(values)
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def table(headers: list[str], rows: list[list], aligns: str | None = None) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    aligns = aligns or ("l" + "r" * (len(headers) - 1))

    def fmt(row):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, aligns))

    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (from /proc/<pid>/stat)."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "(comm)", which may contain spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict:
    """VmRSS / VmHWM / VmSize of a process, in KiB."""
    out = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "VmSize", "Threads"):
            out[key] = int(value.split()[0])
    return out


# ----- the device --------------------------------------------------------------------


def write_device_config(path: Path, *, device_id: str, port: int, data_dir: Path, buzzer: bool = True,
                        backoff_min_s: float = 0.1, backoff_max_s: float = 0.5, clock_trust: str = "auto",
                        extra: str = "") -> Path:
    """A device config as installed at a counter (4 buttons with LEDs, 4-digit display,
    buzzer as in docs/hardware.md), pointing at a local broker."""
    path.write_text(
        "[device]\n"
        f'id = "{device_id}"\nsite = "kien-thuy"\ncounter = "3"\ndata_dir = "{data_dir}"\n'
        "[mqtt]\n"
        f'host = "127.0.0.1"\nport = {port}\n'
        f"backoff_min_s = {backoff_min_s}\nbackoff_max_s = {backoff_max_s}\n"
        "[buzzer]\n"
        f"enabled = {'true' if buzzer else 'false'}\n"
        "[clock]\n"
        f'trust = "{clock_trust}"\n'
        + extra
    )
    return path


class TimedDeviceProcess(DeviceProcess):
    """tests.support.DeviceProcess whose JSON lines carry "_t": time.monotonic() on arrival.

    CLOCK_MONOTONIC is system-wide on Linux, so these times compare with the
    parent's time.monotonic() and with other processes'.
    """

    def __init__(self, config: Path | None, *, env: dict | None = None, argv: list[str] | None = None):
        self.acked_total = 0  # sum of the {"acked": [...]} lines so far
        self.acked_progress: list[tuple[float, int]] = []  # (arrival time, running total)
        self.counts: dict[str, int] = {}  # lines seen per key
        self.spawned_at = time.monotonic()
        super().__init__(config, env=env, argv=argv)

    def _read_stdout(self):
        for line in self.proc.stdout:
            t = time.monotonic()
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = {"garbage": line}
            if isinstance(record, dict):
                record["_t"] = t
                for key in record:
                    self.counts[key] = self.counts.get(key, 0) + 1
                if "acked" in record:
                    self.acked_total += len(record["acked"])
                    self.acked_progress.append((t, self.acked_total))
            self.lines.append(record)
        self.lines.append({"eof": True, "_t": time.monotonic()})

    def wait_until(self, predicate, timeout: float, what: str) -> float:
        """Poll `predicate()` (cheap, on our counters) until true; returns when it became true."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                tail = "\n".join(self.stderr_lines[-30:])
                raise RuntimeError(f"gave up waiting for {what}\n--- device stderr ---\n{tail}")
            time.sleep(0.005)
        return time.monotonic()

    def first(self, key: str, timeout: float = 15.0) -> dict:
        """The first record carrying `key`, waiting for it."""
        def find(items):
            return next((r for r in items if key in r), None)

        try:
            return self.lines.wait_for(find, timeout, what=key)
        except AssertionError as e:
            tail = "\n".join(self.stderr_lines[-30:])
            raise RuntimeError(f"{e}\n--- device stderr ---\n{tail}") from None


def rating_body(*, device: str, boot: str, score: int, ticket: str | None, flags: list[str], ts_ms: int,
                mono: float, officer: str | None = None, scale: int = 4, site: str = "kien-thuy",
                counter: str = "3") -> dict:
    """A rating event body in the key order DeviceRuntime._store builds
    (common fields, ledger/seq placeholders, clock stamp, then the counter's fields)."""
    return {
        "v": 1, "type": "rating", "device": device, "site": site, "counter": counter,
        "ledger": None, "seq": None,
        "ts": ts_ms, "clock_ok": True, "boot": boot, "mono": mono,
        "officer": officer, "ticket": ticket, "score": score, "scale": scale, "flags": flags, "reason": None,
    }


def prefill_ledger(path: Path, n: int, *, device_id: str, seed: int = 1) -> dict:
    """Append N realistic rating events through Ledger.append (one fsynced commit each), as
    if citizens pressed over a long outage: tickets advance, some repeats, scores mostly good."""
    import random

    from device.clock import read_boot_id
    from device.ledger import Ledger
    from protocol.events import validate_event

    rng = random.Random(seed)
    boot = read_boot_id()
    ts = time.time_ns() // 1_000_000 - n * 20_000  # one press every ~20 s until now
    mono = 3600.0
    ticket = 0
    t0 = time.monotonic()
    with Ledger.open(path) as ledger:
        for i in range(n):
            if i == 0 or rng.random() < 0.8:
                ticket += 1
                flags = []
            else:
                flags = ["repeat"]  # the same citizen pressed again
            gap = rng.uniform(5, 35)
            ts += int(gap * 1000)
            mono = round(mono + gap, 3)
            body = rating_body(device=device_id, boot=boot,
                               score=rng.choices([1, 2, 3, 4], weights=[1, 2, 4, 6])[0],
                               ticket=f"A{ticket % 1000:03d}", flags=flags, ts_ms=ts, mono=mono,
                               officer="cb-0042")
            event = ledger.append(body)
            if i == 0:
                validate_event(event)  # the bodies are what the device itself would store
        backlog = ledger.backlog()
        ledger_id = ledger.ledger_id
    return {"seconds": time.monotonic() - t0, "backlog": backlog, "ledger": ledger_id}


# ----- the stand-in central service ------------------------------------------------


class Acker:
    """Subscribes to every device's events and acks them like the central service.

    mode "batch": group commit. Events are collected until `window_s` after the first
    one of a batch (or `max_batch` of them) and then acked with ONE ack message per
    (device, ledger) naming every seq, as the real service acks after one DB commit.
    mode "per-event": one ack message per event as soon as it arrives (tests.support.FakeService).

    `persistent=True` keeps an MQTT 5 session (clean_start=False) so events published while
    this client is disconnected wait for it in the broker, as for the real service.
    `answer_next`: reply to each "call next" with a `ticket` command (A001, A002, ...).
    """

    def __init__(self, host: str, port: int, *, prefix: str = PREFIX, mode: str = "batch",
                 window_s: float = 0.015, max_batch: int = 500, answer_next: bool = False,
                 client_id: str = "bench-service", persistent: bool = False, expect: int | None = None):
        if mode not in ("batch", "per-event"):
            raise ValueError(f"mode must be batch or per-event, not {mode!r}")
        self.prefix = prefix
        self.mode = mode
        self.window_s = window_s
        self.max_batch = max_batch
        self.answer_next = answer_next
        self.expect = expect
        self.received = 0
        self.duplicates = 0
        self.distinct: set[tuple] = set()
        self.acks_sent = 0
        self.seqs_acked = 0
        self.tickets_sent = 0
        self.first_event_at: float | None = None
        self.all_received_at: float | None = None  # time.monotonic() when `expect` distinct events arrived
        self.connects = 0
        self._pending: dict[tuple[str, str], list[int]] = {}
        self._pending_n = 0
        self._batch_started: float | None = None
        self._cond = threading.Condition()
        self._closing = False
        self.subscribed = threading.Event()
        self.all_received = threading.Event()

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.reconnect_delay_set(0.02, 0.2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        props = None
        if persistent:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        self.client.connect_async(host, port, keepalive=30, clean_start=not persistent, properties=props)
        self._flusher = None
        if mode == "batch":
            self._flusher = threading.Thread(target=self._flush_loop, name="acker-flush", daemon=True)
            self._flusher.start()
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            return
        self.connects += 1
        client.subscribe([(f"{self.prefix}/+/event", 1)])

    def _on_message(self, client, userdata, msg):
        device = msg.topic.split("/")[-2]
        event = json.loads(msg.payload)
        now = time.monotonic()
        key = (event["device"], event["ledger"], event["seq"])
        new = key not in self.distinct
        self.received += 1
        if self.first_event_at is None:
            self.first_event_at = now
        if new:
            self.distinct.add(key)
            if self.expect is not None and len(self.distinct) >= self.expect and self.all_received_at is None:
                self.all_received_at = now
                self.all_received.set()
        else:
            self.duplicates += 1
        if self.mode == "per-event":
            self._publish_ack(device, event["ledger"], [event["seq"]])
        else:
            with self._cond:
                self._pending.setdefault((device, event["ledger"]), []).append(event["seq"])
                self._pending_n += 1
                if self._batch_started is None:
                    self._batch_started = now
                self._cond.notify()
        if new and self.answer_next and event.get("type") == "call" and event.get("action") == "next":
            self.tickets_sent += 1
            cmd = {"cmd": "ticket", "ticket": f"A{self.tickets_sent % 1000:03d}", "seq": event["seq"]}
            client.publish(f"{self.prefix}/{device}/cmd", json.dumps(cmd), qos=1)

    def _publish_ack(self, device: str, ledger: str, seqs: list[int]) -> None:
        payload = json.dumps({"ledger": ledger, "seqs": seqs}, separators=(",", ":"))
        self.client.publish(f"{self.prefix}/{device}/ack", payload, qos=1)
        self.acks_sent += 1
        self.seqs_acked += len(seqs)

    def _flush_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing and self._batch_started is None:
                    self._cond.wait()
                if self._closing and self._batch_started is None:
                    return
                # Group commit: wait for the window to close or the batch to fill.
                while not self._closing and self._pending_n < self.max_batch:
                    left = self._batch_started + self.window_s - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch, self._pending = self._pending, {}
                self._pending_n = 0
                self._batch_started = None
            for (device, ledger), seqs in batch.items():
                self._publish_ack(device, ledger, seqs)

    def stats(self) -> dict:
        return {
            "received": self.received, "distinct": len(self.distinct), "duplicates": self.duplicates,
            "acks_sent": self.acks_sent, "seqs_acked": self.seqs_acked, "tickets_sent": self.tickets_sent,
            "connects": self.connects, "first_event_at": self.first_event_at,
            "all_received_at": self.all_received_at,
        }

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._flusher is not None:
            self._flusher.join(2)
        self.client.loop_stop()
        self.client.disconnect()


class AckerProcess:
    """An Acker in its own Python process (this file run as a script)."""

    def __init__(self, port: int, *, mode: str = "per-event", answer_next: bool = False,
                 window_ms: float = 15.0, max_batch: int = 500, client_id: str = "bench-service"):
        cmd = [sys.executable, str(Path(__file__).resolve()), "acker", "--port", str(port), "--mode", mode,
               "--window-ms", str(window_ms), "--max-batch", str(max_batch), "--client-id", client_id]
        if answer_next:
            cmd.append("--answer-next")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()
        if not line or not json.loads(line).get("subscribed"):
            self.proc.kill()
            raise RuntimeError(f"acker process failed to subscribe: {line!r}")

    def close(self) -> dict:
        """Stop it; returns its counters."""
        try:
            self.proc.stdin.close()
            line = self.proc.stdout.readline()
            self.proc.wait(10)
            return json.loads(line) if line else {}
        except (subprocess.TimeoutExpired, ValueError, OSError):
            self.proc.kill()
            self.proc.wait()
            return {}


def _acker_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="_common.py acker")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=("batch", "per-event"), default="per-event")
    p.add_argument("--window-ms", type=float, default=15.0)
    p.add_argument("--max-batch", type=int, default=500)
    p.add_argument("--answer-next", action="store_true")
    p.add_argument("--client-id", default="bench-service")
    args = p.parse_args(argv)
    acker = Acker(args.host, args.port, mode=args.mode, window_s=args.window_ms / 1000,
                  max_batch=args.max_batch, answer_next=args.answer_next, client_id=args.client_id)
    ok = acker.subscribed.wait(10)
    print(json.dumps({"subscribed": ok}), flush=True)
    if not ok:
        return 1
    sys.stdin.read()  # until the parent closes our stdin
    acker.close()
    print(json.dumps(acker.stats()), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "acker":
        sys.exit(_acker_main(sys.argv[2:]))
    print(__doc__)
    sys.exit(2)

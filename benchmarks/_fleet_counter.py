"""One simulated counter of benchmarks/fleet.py: a coroutine, not a firmware process.

It behaves on the wire as device/runtime.py does: on connect it subscribes to its ack, cmd
and assignment topics and publishes its retained online status (its will says offline);
telemetry right away and then every interval; every press becomes a protocol v1 event with
the next seq of its ledger, kept until an `ack` names that seq and re-sent from the oldest
on every reconnect and after `ack_timeout_s` without an ack (device/outbox.py), at most
`window` in flight. Reconnects follow device/backoff.py (equal jitter). The ledger is in
memory: the simulator measures the service and the broker, not the SD card.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from benchmarks import _mqttlite as m
from device.backoff import backoff_delay
from protocol.codec import encode
from protocol.events import make_event
from protocol.messages import decode_ack, decode_command, make_status, make_telemetry
from protocol.topics import Topics

FW = "fleetsim"


@dataclass
class FleetOptions:
    host: str
    port: int
    prefix: str = "hailong/v1"
    v5: bool = True
    keepalive_s: int = 30
    telemetry_s: float = 60.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 5.0
    ack_timeout_s: float = 15.0
    window: int = 100
    connect_timeout_s: float = 10.0
    next_share: float = 0.5  # of presses: "call next"; the rest are ratings
    repeat_share: float = 0.1  # of ratings: a second press for the same ticket ("repeat")


@dataclass
class Fleet:
    """What every counter shares: options, the phase presses are labelled with, and the tallies."""

    opts: FleetOptions
    connect_gate: asyncio.Semaphore
    phase: str = "setup"
    ready: int = 0  # counters connected and subscribed now
    connects: int = 0  # CONNACKs accepted, reconnects included
    refused: int = 0
    pending: int = 0  # presses not acked yet, fleet-wide
    pressed: dict = field(default_factory=dict)  # phase -> presses
    kinds: dict = field(default_factory=dict)  # event type -> presses
    latency: dict = field(default_factory=dict)  # phase -> [press -> ack seconds]
    ticket_latency: dict = field(default_factory=dict)  # phase -> [NEXT press -> ticket cmd seconds]
    first_ack_t: dict = field(default_factory=dict)  # phase -> monotonic time of its first ack
    last_ack_t: float = 0.0
    last_ready_t: float = 0.0
    resends: int = 0
    failed_attempts: int = 0  # connects that timed out or were reset before CONNACK
    slow: list = field(default_factory=list)  # (phase, pressed at, seconds) of acks slower than 1 s
    ready_log: list = field(default_factory=list)  # monotonic times counters became ready in the outage phase
    stopping: bool = False

    def count(self, table: dict, phase: str, value) -> None:
        table.setdefault(phase, []).append(value)


class SimCounter:
    def __init__(self, fleet: Fleet, device: str, site: str, counter: str, password: str | None,
                 rng: random.Random):
        self.fleet, self.device, self.site, self.counter = fleet, device, site, counter
        self.password = password
        self.rng = rng
        self.topics = Topics(device, fleet.opts.prefix)
        self.ledger = f"{rng.getrandbits(64):016x}"
        self.boot = f"{rng.getrandbits(128):032x}"
        self.seq = 0
        self.ticket: str | None = None
        self.pending: dict[int, list] = {}  # seq -> [payload, pressed at, phase]
        self.in_flight: dict[int, float] = {}  # seq -> sent at, on this connection
        self.nexts: dict[int, tuple[float, str]] = {}  # seq of a NEXT -> (pressed at, phase)
        self.writer: asyncio.StreamWriter | None = None
        self.subscribed = False
        self._pid = 0
        self._started = time.monotonic()

    # ----- presses -------------------------------------------------------------------

    def press(self, now: float) -> None:
        """A citizen or an officer pressed: a NEXT or a rating, stored, then sent if the window allows."""
        o, f = self.fleet.opts, self.fleet
        self.seq += 1
        common = dict(device=self.device, site=self.site, counter=self.counter, ledger=self.ledger,
                      seq=self.seq, ts=time.time_ns() // 1_000_000, clock_ok=True, boot=self.boot,
                      mono=round(now - self._started + 3600, 3), ticket=self.ticket)
        if self.rng.random() < o.next_share:
            event = make_event("call", action="next", **common)
            self.nexts[self.seq] = (now, f.phase)
        else:
            flags = ["repeat"] if self.rng.random() < o.repeat_share else []
            event = make_event("rating", score=self.rng.choices((1, 2, 3, 4), (1, 2, 4, 6))[0], scale=4,
                               flags=flags, **common)
        self.pending[self.seq] = [encode(event), now, f.phase]
        f.kinds[event["type"]] = f.kinds.get(event["type"], 0) + 1
        f.pending += 1
        f.pressed[f.phase] = f.pressed.get(f.phase, 0) + 1
        self.pump(now)

    def pump(self, now: float) -> None:
        """Send the oldest unsent events until `window` are in flight (device/outbox.py)."""
        if self.writer is None or not self.subscribed:
            return
        room = self.fleet.opts.window - len(self.in_flight)
        for seq in sorted(self.pending):
            if room <= 0:
                break
            if seq not in self.in_flight:
                self._publish(self.topics.event, self.pending[seq][0], qos=1)
                self.in_flight[seq] = now
                room -= 1

    def check_timeouts(self, now: float) -> None:
        """An ack went missing: go back and resend from the oldest unacknowledged event."""
        if any(now - t >= self.fleet.opts.ack_timeout_s for t in self.in_flight.values()):
            self.fleet.resends += len(self.in_flight)
            self.in_flight.clear()
            self.pump(now)

    # ----- what arrives ----------------------------------------------------------------

    def _on_ack(self, payload: bytes, now: float) -> None:
        ack = decode_ack(payload)
        if ack["ledger"] != self.ledger:
            return
        f = self.fleet
        for seq in ack["seqs"] + [r["seq"] for r in ack["rejected"]]:
            self.in_flight.pop(seq, None)
            entry = self.pending.pop(seq, None)
            if entry is None:
                continue  # a duplicate's ack: already deleted
            f.pending -= 1
            f.count(f.latency, entry[2], now - entry[1])
            if now - entry[1] > 1.0:
                f.slow.append((entry[2], entry[1], now - entry[1]))
            f.first_ack_t.setdefault(entry[2], now)
            f.last_ack_t = now
        self.pump(now)

    def _on_command(self, payload: bytes, now: float) -> None:
        cmd = decode_command(payload)
        if cmd["cmd"] != "ticket":
            return
        self.ticket = cmd["ticket"]
        pressed = self.nexts.pop(cmd.get("seq"), None)
        if pressed is not None:
            self.fleet.count(self.fleet.ticket_latency, pressed[1], now - pressed[0])

    def _on_publish(self, flags: int, body: bytes) -> None:
        topic, qos, pid, payload = m.parse_publish(flags, body, v5=self.fleet.opts.v5)
        if qos:
            self.writer.write(m.puback_packet(pid))
        now = time.monotonic()
        if topic == self.topics.ack:
            self._on_ack(payload, now)
        elif topic == self.topics.cmd:
            self._on_command(payload, now)

    # ----- the connection ----------------------------------------------------------------

    def _next_pid(self) -> int:
        self._pid = self._pid % 65535 + 1
        return self._pid

    def _publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> None:
        pid = self._next_pid() if qos else 0
        self.writer.write(m.publish_packet(topic, payload, qos=qos, pid=pid, retain=retain, v5=self.fleet.opts.v5))

    def telemetry(self) -> bytes:
        return encode(make_telemetry(
            uptime_s=round(time.monotonic() - self._started + 3600, 1), backlog=len(self.pending), clock_ok=True,
            fw=FW, disk_free_mb=1234.5, cpu_temp_c=48.2, ts=time.time_ns() // 1_000_000, ledger=self.ledger,
            in_flight=len(self.in_flight)))

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        o = self.fleet.opts
        reader, writer = await asyncio.wait_for(asyncio.open_connection(o.host, o.port), o.connect_timeout_s)
        will = (self.topics.status, encode(make_status(False)))
        writer.write(m.connect_packet(self.device, v5=o.v5, keepalive_s=o.keepalive_s, username=self.device,
                                      password=self.password, will=will))
        kind, _, body = await asyncio.wait_for(m.read_packet(reader), o.connect_timeout_s)
        if kind != m.CONNACK or m.connack_code(body) != 0:
            writer.close()
            self.fleet.refused += 1
            raise m.MqttError(f"refused: packet {kind}, code {m.connack_code(body) if body else '?'}")
        return reader, writer

    async def _background(self) -> None:
        """Keepalive pings, and telemetry now (the service learns our backlog) and then every interval."""
        o = self.fleet.opts
        next_ping = time.monotonic() + o.keepalive_s
        next_telemetry = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_telemetry:
                self._publish(self.topics.telemetry, self.telemetry(), qos=0)
                next_telemetry = now + o.telemetry_s
            if now >= next_ping:
                self.writer.write(m.PINGREQ_PACKET)
                next_ping = now + o.keepalive_s
            await asyncio.sleep(min(next_ping, next_telemetry) - now)

    async def _session(self, reader: asyncio.StreamReader) -> None:
        o, f = self.fleet.opts, self.fleet
        self.writer.write(m.subscribe_packet(
            self._next_pid(), [self.topics.ack, self.topics.cmd, self.topics.assignment], v5=o.v5))
        status = make_status(True, fw=FW, ledger=self.ledger, ts=time.time_ns() // 1_000_000)
        self._publish(self.topics.status, encode(status), qos=1, retain=True)
        while True:
            kind, flags, body = await m.read_packet(reader)
            if kind == m.PUBLISH:
                self._on_publish(flags, body)
            elif kind == m.SUBACK and not self.subscribed:
                if m.suback_refused(body, v5=o.v5):
                    raise m.MqttError("subscription refused (ACL?)")
                self.subscribed = True
                f.ready += 1
                f.last_ready_t = time.monotonic()
                if f.phase == "outage":
                    f.ready_log.append(f.last_ready_t)
                self.in_flight.clear()  # whatever was in flight may or may not have arrived
                self.pump(time.monotonic())
            elif kind == m.DISCONNECT:
                raise m.MqttError("the broker disconnected us")

    async def run(self) -> None:
        o, f = self.fleet.opts, self.fleet
        attempt, first = 0, True
        while not f.stopping:
            background, opened = None, False
            try:
                if first:  # the first connect is paced so it measures the broker, not SYN backlog drops
                    async with f.connect_gate:
                        reader, self.writer = await self._open()
                else:
                    reader, self.writer = await self._open()
                first, attempt, opened = False, 0, True
                f.connects += 1
                background = asyncio.create_task(self._background())
                await self._session(reader)
            except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.TimeoutError, m.MqttError):
                if not opened:
                    f.failed_attempts += 1
            finally:
                self._disconnected(background)
            if not f.stopping:
                await asyncio.sleep(backoff_delay(attempt, base=o.backoff_min_s, cap=o.backoff_max_s,
                                                  rand=self.rng.random))
                attempt += 1

    def _disconnected(self, background: asyncio.Task | None) -> None:
        if background is not None:
            background.cancel()
        if self.subscribed:
            self.fleet.ready -= 1
        self.subscribed = False
        self.in_flight.clear()
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    async def stop(self) -> None:
        """A clean goodbye as the device gives it: offline status (a DISCONNECT suppresses the will)."""
        if self.writer is not None and self.subscribed:
            try:
                self._publish(self.topics.status, encode(make_status(False)), qos=1, retain=True)
                self.writer.write(m.DISCONNECT_PACKET)
                await self.writer.drain()
            except (OSError, ConnectionError):
                pass

"""MQTT ingest: commit first, then ack — the MQTT message and the device's ledger.

Messages arrive on paho's thread and are only queued there. One worker thread takes
them in groups (up to `batch_max`, waiting at most `batch_wait_ms` to fill a group),
commits the whole group in one transaction, and only then acknowledges: the MQTT
PUBACK (paho `manual_ack`) and the `ack` message that lets each device delete exactly
those events. A crash between commit and ack only causes a re-send, which the store
recognises as a duplicate and which is acked again.

With several brokers (`hosts`, docs/brokers.md) there is one paho client per broker, all
feeding the one queue. A message remembers the broker it came in on: its PUBACK goes back
there, and so does the device's `ack`. Commands go to the broker the device is on
(broker.presence), retained messages to every broker.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from common import clock
from common.mqtt import ClientSettings, connect_args, make_client
from broker.presence import Presence
from broker.queueing import QueueDesk
from common.periods import DEFAULT_TZ, local_day, zone
from protocol import ProtocolError
from protocol.codec import encode
from protocol.messages import decode_status, decode_telemetry, make_ack, make_command
from protocol.topics import Topics, subscription, valid_device_id

log = logging.getLogger("hailong.ingest")
SESSION_TAKEN_OVER = 142  # MQTT 5 DISCONNECT reason code 0x8E (Mosquitto 2.0 just closes the socket instead)
# Connections that end this soon after they began, this many times in a row, look like two clients with
# one id taking the session from each other.
FLAP_S, FLAPS = 2.0, 3


def subscriptions(prefix: str, shared_group: str | None) -> tuple[list[tuple[str, int]], list[str]]:
    """(filters to subscribe with their QoS, filters to drop) for one instance.

    With a shared group, the broker hands each event and kiosk request to one instance of the
    group ($share/GROUP/filter; MQTT 5 only, see broker.config). Statuses and telemetry stay
    per instance: every instance needs each device's online state (Ingest._live), and recording
    them twice is an idempotent upsert. A persistent session from a run without the group may
    still hold the plain event and request filters, which would hand this instance every message
    besides its share: those are dropped.
    """
    def shared(kind: str) -> str:
        return f"$share/{shared_group}/{subscription(kind, prefix)}" if shared_group else subscription(kind, prefix)

    wanted = [(shared("event"), 1), (subscription("status", prefix), 1), (subscription("telemetry", prefix), 0),
              (shared("request"), 1)]
    dropped = [subscription("event", prefix), subscription("request", prefix)] if shared_group else []
    return wanted, dropped


@dataclass(frozen=True)
class IngestSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    protocol: str = "5"
    client_id: str = "hailong-service"
    shared_group: str | None = None  # several instances on one stream (docs/instances.md)
    prefix: str = "hailong/v1"
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    session_expiry_s: int = 604800
    keepalive_s: int = 30
    batch_max: int = 500
    batch_wait_ms: int = 20
    ticket_fresh_s: float = 5.0
    timezone: str = DEFAULT_TZ
    queue_block_size: int = 10
    hosts: tuple[tuple[str, int], ...] = ()  # several brokers, all consumed at once; empty: host and port

    @property
    def brokers(self) -> tuple[tuple[str, int], ...]:
        return self.hosts or ((self.host, self.port),)


@dataclass
class _Msg:
    topic: str
    payload: bytes
    mid: int
    qos: int
    dup: bool
    received_ms: int
    online: bool = False  # the sender's last known status when this arrived
    link: int = 0  # the broker it came in on (index into settings.brokers)
    retain: bool = False  # a retained copy the broker replayed on subscribe, not a live publish
    stale: bool = False  # a status about a broker the device has left (broker.presence)


@dataclass
class Metrics:
    """Counters for /metrics; written by the worker thread only (the brokers' by the paho threads, under a lock).

    ingested counts every event stored for the first time, held ones included; held counts those
    stored but not counted (broker.store.held); conflicts the resends whose body differs from the
    stored copy (dead-lettered), which duplicates (identical resends) does not include.
    """

    ingested: int = 0
    duplicates: int = 0
    conflicts: int = 0
    held: int = 0
    rejected: int = 0
    batches: int = 0
    last_lag_ms: int = 0
    tickets: int = 0
    online: dict[str, bool] = field(default_factory=dict)
    brokers: int = 1  # configured
    brokers_connected: int = 0


class Ingest:
    def __init__(self, store, settings: IngestSettings, *, now_ms: Callable[[], int] | None = None):
        self.store = store
        self.s = settings
        self.metrics = Metrics()
        self._now_ms = now_ms or clock.now_ms
        self._q: queue.Queue[_Msg | None] = queue.Queue()
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._tickets: list[dict] = []  # the group's live NEXTs waiting for their numbers
        self._connected_at: dict[int, float] = {}  # per broker link: when it last connected
        self._flaps: dict[int, int] = {}  # per broker link: brief connections in a row
        self.failed = threading.Event()
        self.failure: BaseException | None = None
        self._worker = threading.Thread(target=self._work, name="ingest", daemon=True)
        self.presence = Presence()
        self._up: set[int] = set()  # the brokers we are connected to
        self._up_lock = threading.Lock()  # each broker's callbacks run on its own paho thread
        self.metrics.brokers = len(settings.brokers)
        self._clients = [self._make_client(link) for link in range(len(settings.brokers))]
        self.desk = QueueDesk(store, self._command, self._now_ms, settings.queue_block_size)

    @property
    def _client(self):
        """The first broker's client (the only one with a single broker)."""
        return self._clients[0]

    @_client.setter
    def _client(self, client) -> None:
        self._clients[0] = client

    # ----- lifecycle ---------------------------------------------------------------

    def start(self) -> "Ingest":
        self._worker.start()
        for link, client in enumerate(self._clients):
            client.connect_async(**connect_args(self._client_settings(link)))
            client.loop_start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the group in hand, then disconnect; unacked messages come back next time.

        Safe to call twice, or on an ingest that never started.
        """
        if self._worker.ident is None or (self._stop.is_set() and not self._worker.is_alive()):
            return  # never started, or already stopped
        self._stop.set()
        self._q.put(None)
        self._worker.join(timeout)
        for client in self._clients:
            client.disconnect()
            client.loop_stop()

    def publish(self, device: str, kind: str, payload: dict, *, retain: bool = False, link: int | None = None) -> None:
        """Retained: on every broker, for wherever the device connects next. Otherwise on `link`, or
        the broker the device is on (or was last heard on); on every broker if it was never heard."""
        topic = Topics(device, self.s.prefix).topic(kind)
        if link is None and not retain:
            link = self.presence.broker(device)
        for client in self._clients if link is None else [self._clients[link]]:
            client.publish(topic, encode(payload), qos=1, retain=retain)

    # ----- paho ---------------------------------------------------------------------

    def _client_settings(self, link: int = 0) -> ClientSettings:
        s = self.s
        host, port = s.brokers[link]
        return ClientSettings(
            client_id=s.client_id, host=host, port=port, protocol=s.protocol,
            username=s.username or None, password=s.password,
            tls=s.tls, ca_file=s.ca_file, cert_file=s.cert_file, key_file=s.key_file,
            keepalive_s=s.keepalive_s, session_expiry_s=s.session_expiry_s,
            max_inflight=1000, reconnect_delay_s=(0.5, 5),
            manual_ack=True,  # the PUBACK waits for the commit (see the module docstring)
        )

    def _make_client(self, link: int = 0):
        client = make_client(self._client_settings(link))
        client.user_data_set(link)  # every callback learns which broker it is about
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        host, port = self.s.brokers[userdata]
        if reason_code.is_failure:
            log.error("broker %s:%s refused the service: %s", host, port, reason_code)
            return
        wanted, dropped = subscriptions(self.s.prefix, self.s.shared_group)
        if dropped:
            client.unsubscribe(dropped)
        client.subscribe(wanted)
        with self._up_lock:
            self._up.add(userdata)
            self._connected_at[userdata] = time.monotonic()
            self.metrics.brokers_connected = len(self._up)
            self.connected.set()
        log.info("ingest connected to %s:%s", host, port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._up_lock:
            self._up.discard(userdata)
            self.metrics.brokers_connected = len(self._up)
            if not self._up:
                self.connected.clear()
        since = self._connected_at.get(userdata)
        brief = since is not None and time.monotonic() - since < FLAP_S
        self._flaps[userdata] = self._flaps.get(userdata, 0) + 1 if brief else 0
        if reason_code == SESSION_TAKEN_OVER or self._flaps[userdata] >= FLAPS:
            log.error("another client connected with this service's client id %r and took its session over "
                      "(or the broker keeps dropping us right after connecting): give every instance its own "
                      "mqtt.client_id", self.s.client_id)
        log.warning("ingest lost the broker %s:%s: %s", *self.s.brokers[userdata], reason_code)

    def _on_message(self, client, userdata, msg):
        self._q.put(_Msg(msg.topic, msg.payload, msg.mid, msg.qos, bool(msg.dup), self._now_ms(),
                         link=userdata, retain=bool(msg.retain)))

    # ----- the worker ---------------------------------------------------------------

    def _next_group(self) -> list[_Msg]:
        first = self._q.get()
        if first is None:
            return []
        group = [first]
        deadline = time.monotonic() + self.s.batch_wait_ms / 1000
        while len(group) < self.s.batch_max:
            left = deadline - time.monotonic()
            try:
                item = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._stop.set()
                break
            group.append(item)
        return group

    def _work(self) -> None:
        while not self._stop.is_set():
            group = self._next_group()
            if not group:
                continue
            try:
                self._process(group)
            except Exception as e:  # noqa: BLE001 - nothing was acked, so nothing is lost
                # Carrying on would leave these messages unacked in this session forever;
                # stopping lets the supervisor restart us and the broker redeliver them.
                log.exception("could not commit a group of %d messages; stopping without acking", len(group))
                self.failure = e
                self.failed.set()
                return

    def _process(self, group: list[_Msg]) -> None:
        from broker.store import Incoming

        events, others = [], []
        for m in group:
            device, kind = m.topic.split("/")[-2:]
            if kind == "status":
                self._note_online(device, m)
            else:
                self.presence.heard(device, m.link)
            if kind == "event":
                # Whether the device was online when this event arrived, in arrival order
                # (its status often comes in the same group, just before its first NEXT).
                m.online = self.metrics.online.get(device, False)
                events.append((device, kind, m))
            else:
                others.append((device, kind, m))
        if events:
            outcomes = self.store.ingest([Incoming(d, m.payload, m.received_ms) for d, _, m in events])
            self._answer(events, outcomes)
        health = []
        for device, kind, m in others:
            if kind == "request":
                self.desk.request(device, m.payload)
            else:
                health.extend(self._health(device, kind, m))
        self.store.device_health(health)
        for _, _, m in events + others:
            if m.qos:
                self._clients[m.link].ack(m.mid, m.qos)  # the PUBACK belongs to the broker that sent it
        self.metrics.batches += 1

    def _answer(self, events, outcomes) -> None:
        acks: dict[tuple[str, str, int], dict] = {}
        self._tickets = []
        now = self._now_ms()
        for (device, _, m), out in zip(events, outcomes):
            self.metrics.last_lag_ms = now - m.received_ms
            self._count(device, out)
            if out.ledger is None or out.seq is None:
                continue  # too broken to name: dead-lettered, nothing the device can delete
            if not valid_device_id(out.device):
                continue  # a topic level no device can have (only without an ACL): no address for an ack
            # On the broker the device sent from: the one it is connected to, at least until just now.
            entry = acks.setdefault((out.device, out.ledger, m.link), {"seqs": [], "rejected": []})
            if out.status == "rejected":
                entry["rejected"].append({"seq": out.seq, "reason": out.reason[:200]})
            else:
                entry["seqs"].append(out.seq)
            # A held event's device is not vouched for: no queue number, no officer's name for it.
            counted = out.status == "stored" and out.held is None
            if out.status in ("stored", "duplicate") and out.held is None and out.event["type"] == "call":
                self._call(out.event, m, first=counted)
            if counted:
                self._resolve_badge(out.event)
        self._send_tickets()
        for (device, ledger, link), entry in acks.items():
            self.publish(device, "ack", make_ack(ledger, entry["seqs"], entry["rejected"]), link=link)

    def _count(self, device: str, out) -> None:
        """The metrics of one outcome; what an operator must look at is logged."""
        m = self.metrics
        if out.status == "stored":
            m.ingested += 1
            if out.held is not None:
                m.held += 1
                log.warning("holding event %s/%s from %s (not counted): %s", out.ledger, out.seq, device, out.held)
        elif out.status == "duplicate":
            m.duplicates += 1
        elif out.status == "conflict":
            m.conflicts += 1
            log.warning("conflicting duplicate %s/%s from %s: dead-lettered, the first copy stands",
                        out.ledger, out.seq, device)
        else:
            m.rejected += 1
            log.warning("rejected event from %s: %s", device, out.reason)

    def _call(self, ev: dict, m: _Msg, first: bool) -> None:
        """A counter serving queues is the desk's (broker.queueing), which applies a resent call not applied
        yet; the others draw the site's daily number, for the call's first copy only."""
        if not self.desk.call(ev, self._live(ev, m)) and first and self._wants_ticket(ev, m):
            self._send_ticket(ev)

    def _wants_ticket(self, ev: dict, m: _Msg) -> bool:
        """A live NEXT gets a number; a replayed one (backlog after an outage) does not."""
        return ev["type"] == "call" and ev["action"] == "next" and self._live(ev, m)

    def _live(self, ev: dict, m: _Msg) -> bool:
        """The counter is waiting for the answer: online when it sent this, and sent just now (not a backlog)."""
        if not m.online:
            return False
        if ev["clock_ok"]:
            return m.received_ms - ev["ts"] <= self.s.ticket_fresh_s * 1000
        return not m.dup

    def _resolve_badge(self, ev: dict) -> None:
        """A badge the counter does not know: tell it whose it is, if the registry knows."""
        if ev["type"] != "signin" or ev["officer"] is not None or not ev.get("badge"):
            return
        officer = self.store.officer_by_badge(ev["badge"])
        if officer is not None:
            self._command(ev["device"], "officer", officer={
                "id": officer["id"], "name": officer["name"], "code": officer["code"] or officer["id"][:8]})

    def _send_ticket(self, ev: dict) -> None:
        self._tickets.append(ev)

    def _send_tickets(self) -> None:
        """The group's live NEXTs get the site's next numbers, in arrival order, from one transaction."""
        if not self._tickets:
            return
        # Numbers restart every day of the service's zone (per site in the store).
        day = local_day(self._now_ms(), zone(self.s.timezone))
        numbers = self.store.next_tickets([(ev["site"], day) for ev in self._tickets])
        for ev, number in zip(self._tickets, numbers):
            if self._command(ev["device"], "ticket", ticket=str(number), seq=ev["seq"]):
                self.metrics.tickets += 1
        self._tickets = []

    def _command(self, device: str, cmd: str, **fields) -> bool:
        """Send a `cmd` the device can obey; one it would refuse as malformed is not sent at all."""
        try:
            command = make_command(cmd, **fields)
        except ProtocolError as e:
            # Raising here would stop the worker with the group unacked, and the same group
            # would fail again on every restart: log it, and let the events be acked.
            log.warning("not sending %s command to %s: %s", cmd, device, e)
            return False
        self.publish(device, "cmd", command)
        return True

    def _note_online(self, device: str, m: _Msg) -> None:
        try:
            if not m.payload:  # a cleared retained status
                return
            status = decode_status(m.payload)
        except ProtocolError:
            return  # reported by _health
        m.stale = not self.presence.status(device, m.link, bool(status["online"]), status.get("ts"),
                                           replayed=m.retain)
        if m.stale:
            log.info("ignoring %s's stale status from broker %s:%s", device, *self.s.brokers[m.link])
        self.metrics.online[device] = self.presence.online(device)

    def _health(self, device: str, kind: str, m: _Msg) -> list[tuple[str, str, dict, int]]:
        """What of a status or telemetry message the store records (the group's go in together)."""
        try:
            if kind == "status":
                if not m.payload or m.stale:
                    return []
                return [(device, kind, decode_status(m.payload), m.received_ms)]
            if kind == "telemetry":
                return [(device, kind, decode_telemetry(m.payload), m.received_ms)]
        except ProtocolError as e:
            log.warning("ignoring malformed %s from %s: %s", kind, device, e)
        return []

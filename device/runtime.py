"""Wires the counter together: inputs -> state machine -> ledger, display, LEDs, uplink.

Everything that changes state happens on one thread (the loop in `run`), fed by a
queue: gpiozero, MQTT and badge callbacks only enqueue. That keeps the state machine
single-threaded and makes the order "commit to ledger, then show feedback" hold.
"""
from __future__ import annotations

import logging
import queue
import shutil
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Callable

from device import __version__, systemd
from device.clock import SystemClock
from device.counter import (
    Beep, Counter, CounterSettings, Finalize, Led, Officer, Remember, Show, Store,
)
from device.ledger import Ledger, LedgerCorrupt, LedgerError
from device.outbox import Outbox
from device.salvage import Salvage, SalvageView
from device.update_agent import Updates
from device.updater import EXIT_RESTART
from device.uplink import MqttUplink, UplinkSettings
from protocol import ProtocolError
from protocol.codec import encode
from protocol.messages import (
    decode_ack, decode_assignment, decode_command, make_status, make_telemetry,
)
from protocol.topics import Topics

log = logging.getLogger("hailong.device")

Emit = Callable[[dict], None]

# Events published per loop pass while draining a backlog; presses are served in between.
SEND_BUDGET = 25


@dataclass(frozen=True)
class _Item:
    kind: str
    args: tuple = ()


def counter_settings(cfg) -> CounterSettings:
    r, st = cfg.rating, cfg.staff
    return CounterSettings(
        scale=r.scale,
        width=cfg.display_width,
        repeat_gap_s=r.repeat_gap_s,
        grace_s=r.grace_s,
        feedback_s=r.feedback_s,
        reasons=tuple(r.reasons),
        ask_reason_max_score=r.ask_reason_max_score,
        reason_window_s=r.reason_window_s,
        hold_close_s=st.hold_close_s,
        hold_noshow_s=st.hold_noshow_s,
        ticket_timeout_s=st.ticket_timeout_s,
    )


def uplink_settings(cfg, topics: Topics) -> UplinkSettings:
    m = cfg.mqtt
    return UplinkSettings(
        client_id=cfg.device.id,
        host=m.brokers[0][0],
        port=m.brokers[0][1],
        hosts=m.brokers,
        username=m.username,
        password=m.password,
        protocol=m.protocol,
        keepalive_s=m.keepalive_s,
        session_expiry_s=m.session_expiry_s,
        tls=m.tls,
        ca_file=str(m.ca_file) if m.ca_file else None,
        cert_file=str(m.cert_file) if m.cert_file else None,
        key_file=str(m.key_file) if m.key_file else None,
        backoff_min_s=m.backoff_min_s,
        backoff_max_s=m.backoff_max_s,
        connect_timeout_s=m.connect_timeout_s,
        max_inflight=cfg.ledger.in_flight,
        will=(topics.status, encode(make_status(False))),
        subscriptions=((topics.ack, 1), (topics.cmd, 1), (topics.assignment, 1)),
    )


def _officer(obj: dict | None) -> Officer | None:
    if obj is None:
        return None
    return Officer(obj["id"], obj.get("name", ""), obj.get("code", ""))


class DeviceRuntime:
    def __init__(
        self,
        cfg,
        *,
        panel_factory: Callable[[Callable[[str, bool, float], None]], Any],
        display,
        emit: Emit = lambda record: None,
        clock: SystemClock | None = None,
        uplink_factory: Callable[..., Any] = MqttUplink,
    ):
        self.cfg = cfg
        self.emit = emit
        self.clock = clock or SystemClock(cfg.clock.trust)
        self.topics = Topics(cfg.device.id, cfg.mqtt.prefix)
        # SimpleQueue: its put() is reentrant, so stop() may run in a signal handler that
        # interrupted this very queue (a queue.Queue deadlocks on its own lock there).
        self._q: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self.ready = threading.Event()

        self.ledger = Ledger.open(cfg.ledger_path, on_quarantine=self._quarantined)
        self.counter = self._machine(cfg)
        self.display = display
        self.panel = panel_factory(self._on_input)
        self.uplink = uplink_factory(
            uplink_settings(cfg, self.topics),
            on_connect=lambda: self._q.put(_Item("up")),
            on_disconnect=lambda reason: self._q.put(_Item("down", (reason,))),
            on_message=lambda topic, payload: self._q.put(_Item("msg", (topic, payload))),
        )
        self.outbox = self._outbox(self.ledger)
        self.salvage, self._salvaged = self._open_salvage()
        self._rescue_outboxes = {lid: self._outbox(view) for lid, view in self._salvaged.items()}
        self._outboxes = [self.outbox, *self._rescue_outboxes.values()]
        self._acks: dict[str, list[int]] = {}
        self._ack_trouble = False
        self._unfinished: dict | None = None  # a reason that could not be written yet
        self._corrupt: LedgerCorrupt | None = None
        self._refused = False  # the last batch of effects stopped at a Store the ledger refused
        self._telemetry_at = 0.0
        self._watchdog_every = systemd.watchdog_interval()
        self._watchdog_at = 0.0
        # Created after the ledger opened and was read: that is the first health check of a new version.
        self.updates = Updates(cfg, running=__version__, now=self.clock.monotonic(), emit=emit)
        self._last_input = float("-inf")
        self.exit_code = 0  # EXIT_RESTART: start again, into another version

    def _machine(self, cfg) -> Any:
        """The state machine this runtime drives (the kiosk's runtime drives its own)."""
        return Counter(
            counter_settings(cfg),
            badges={o.badge: Officer(o.id, o.name, o.code) for o in cfg.officers if o.badge},
            officer=Counter.officer_from_memory(self.ledger.get_meta("officer")),
            fallback_next=int(self.ledger.get_meta("fallback_next", str(cfg.staff.fallback_start))),
        )

    # ----- inputs from other threads ----------------------------------------------

    def _on_input(self, name: str, pressed: bool, t: float) -> None:
        self._q.put(_Item("press" if pressed else "release", (name, t)))

    def badge(self, uid: str) -> None:
        self._q.put(_Item("badge", (uid,)))

    def stop(self) -> None:
        self._q.put(_Item("stop"))

    def _outbox(self, ledger) -> Outbox:
        return Outbox(ledger, self._send_event, window=self.cfg.ledger.in_flight,
                      ack_timeout_s=self.cfg.ledger.ack_timeout_s)

    def _open_salvage(self) -> tuple[Salvage | None, dict[str, SalvageView]]:
        """Rescue the votes of quarantined ledgers; trouble here must not stop the counter."""
        try:
            salvage = Salvage.open(self.cfg.ledger_path)
            for path, rescue in salvage.scan():
                self.emit({"salvage": {"file": path.name, "ledger": rescue.ledger, "events": len(rescue.events),
                                       "unreadable": rescue.unreadable}})
            return salvage, {lid: SalvageView(salvage, lid) for lid in salvage.ledgers()}
        except Exception as exc:  # noqa: BLE001 - sqlite3, OS and anything else: log, count, go on
            log.exception("salvage of quarantined ledgers failed")
            self.emit({"error": f"salvage: {exc}"})
            return None, {}

    def _quarantined(self, moved, reason: str) -> None:
        log.error("ledger was corrupt (%s); moved aside to %s, starting a new ledger", reason, moved)
        self.emit({"quarantined": str(moved), "reason": reason})

    # ----- the loop -------------------------------------------------------------------

    def run(self) -> None:
        now = self.clock.monotonic()
        self._feed(self.counter.start, now)
        self.uplink.start()
        self.emit({"ready": True, "ledger": self.ledger.ledger_id, "backlog": self.ledger.backlog()})
        self.ready.set()
        systemd.ready()
        try:
            while not self._stopping.is_set():
                item = self._next_item()
                while item is not None:
                    self._handle(item)
                    try:
                        item = self._q.get_nowait()
                    except queue.Empty:
                        item = None
                self._flush_acks()
                now = self.clock.monotonic()
                self._feed(self.counter.tick, now)
                self._pump(now)
                self._periodic(now)
        finally:
            self._shutdown()
        if self._corrupt is not None:
            # Exit non-zero: the service manager restarts us, and opening the ledger again
            # quarantines the file and salvages what it still holds.
            raise self._corrupt

    def _pump(self, now: float) -> None:
        budget = SEND_BUDGET
        for outbox in self._outboxes:  # today's votes first, then any rescued ones
            budget -= outbox.pump(now, budget=budget, yield_to=self._work_waiting)
            if budget <= 0 or outbox.more:
                break

    def _work_waiting(self) -> bool:
        # Presses, releases and acks all beat sending more of a backlog.
        return not self._q.empty()

    def _next_item(self) -> _Item | None:
        now = self.clock.monotonic()
        if any(o.more for o in self._outboxes):
            try:
                return self._q.get_nowait()
            except queue.Empty:
                return None
        deadlines = [d for d in (self.counter.next_deadline(), *(o.next_deadline() for o in self._outboxes)) if d]
        deadlines.append(self._telemetry_at if self.outbox.connected else now + 1.0)
        if self._watchdog_every:
            deadlines.append(self._watchdog_at)
        if self._acks or self._unfinished is not None:
            deadlines.append(now + 1.0)  # retry what the disk refused
        timeout = max(0.0, min(min(deadlines) - now, 1.0))
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def _handle(self, item: _Item) -> None:
        now = self.clock.monotonic()
        if item.kind in ("press", "release", "badge"):
            self._last_input = now
        if item.kind == "press":
            name, t = item.args
            self._feed(self.counter.press, name, t)
        elif item.kind == "release":
            name, t = item.args
            self._feed(self.counter.release, name, t)
        elif item.kind == "badge":
            self._feed(self.counter.badge, item.args[0], now)
        elif item.kind == "msg":
            self._message(*item.args, now=now)
        elif item.kind == "up":
            self._connected(now)
        elif item.kind == "down":
            log.warning("broker connection lost: %s", item.args[0])
            for outbox in self._outboxes:
                outbox.connection_down()
            self._feed(self.counter.set_online, False, now)
            self.updates.online(False, now)
            self.emit({"online": False})
        elif item.kind == "stop":
            self._stopping.set()

    def _connected(self, now: float) -> None:
        for outbox in self._outboxes:
            outbox.connection_up()
        self._feed(self.counter.set_online, True, now)
        status = make_status(True, fw=__version__, ledger=self.ledger.ledger_id, ts=self.clock.wall_ms())
        self.uplink.publish(self.topics.status, encode(status), qos=1, retain=True)
        self._telemetry_at = now  # right away: the service learns our backlog on reconnect
        self.updates.online(True, now)
        self.emit({"online": True})

    def _message(self, topic: str, payload: bytes, *, now: float) -> None:
        try:
            if topic == self.topics.ack:
                self._ack(decode_ack(payload))
            elif topic == self.topics.cmd:
                self._command(decode_command(payload), now)
            elif topic == self.topics.assignment:
                self._feed(self.counter.set_officer, _officer(decode_assignment(payload)["officer"]), now)
            else:
                log.warning("ignoring message on unexpected topic %s", topic)
        except ProtocolError as e:
            log.warning("ignoring malformed message on %s: %s (payload %r)", topic, e, payload[:200])

    def _ack(self, ack: dict) -> None:
        for r in ack["rejected"]:
            log.error("service permanently rejected event %s: %s", r["seq"], r["reason"])
        seqs = self._acks.setdefault(ack["ledger"], [])
        seqs += ack["seqs"]
        seqs += [r["seq"] for r in ack["rejected"]]

    def _flush_acks(self) -> None:
        # Acks that queued up together are deleted in one transaction: one fsync, not one each.
        acks, self._acks = self._acks, {}
        for ledger_id, seqs in acks.items():
            rescued = self._rescue_outboxes.get(ledger_id)
            outbox = self.outbox if rescued is None else rescued
            try:
                done = outbox.acked(ledger_id, seqs)
            except (LedgerError, sqlite3.Error) as err:
                # A full disk refuses even a delete: keep the ack and try again, never crash over it.
                self._acks.setdefault(ledger_id, []).extend(seqs)
                if not self._ack_trouble:
                    log.error("cannot record acks for ledger %s: %s (will retry)", ledger_id, err)
                    self.emit({"error": f"ack: {err}"})
                self._ack_trouble = True
                continue
            self._ack_trouble = False
            if done and rescued is None:
                self.updates.acked(done)
            if done:
                self.emit({"acked" if rescued is None else "salvage_acked": done})

    def _command(self, cmd: dict, now: float) -> None:
        kind = cmd["cmd"]
        if kind == "display":
            self._feed(self.counter.display_ticket, cmd["ticket"], now)
        elif kind == "ticket" and cmd.get("idle"):
            self._feed(self.counter.idle_answer, cmd["seq"], now)
        elif kind == "ticket":
            self._feed(self.counter.ticket_answer, cmd["ticket"], cmd["seq"], now)
        elif kind == "officer":
            self._feed(self.counter.set_officer, _officer(cmd["officer"]), now)
        elif kind == "identify":
            self._feed(self.counter.identify, cmd["seconds"], now)
        elif kind == "update":
            self.updates.offer(cmd)

    # ----- effects -------------------------------------------------------------------

    def _feed(self, step: Callable, *args) -> None:
        """Run one step of the counter and carry out its effects; undo the step if its vote was refused."""
        before = self.counter.snapshot()
        self._refused = False
        self._apply(step(*args))
        if self._refused:
            # Feedback is a promise we cannot keep without the ledger: the counter forgets the
            # press (no "thank you" animation later, no "repeat" flag on the citizen's retry)
            # and shows the fault instead of the rest of this batch (its LED, animation, beep).
            self.counter.restore(before)
            self._apply(self.counter.refused(self.clock.monotonic()))

    def _apply(self, effects) -> None:
        """Carry out effects in order; stop at a Store the ledger refused (and say so in `_refused`)."""
        for e in effects:
            if isinstance(e, Store):
                try:
                    self._store(e)
                except LedgerError as err:
                    log.error("could not store %s event: %s", e.type, err)
                    self.emit({"error": f"ledger: {err}"})
                    if isinstance(err, LedgerCorrupt):
                        self._corrupt = err
                        self._stopping.set()
                    self._refused = True
                    return
            elif isinstance(e, Show):
                self.display.show(e.text)
            elif isinstance(e, Led):
                if e.index == 0:
                    self.panel.set_all_leds(e.on)
                else:
                    self.panel.set_led(e.index, e.on)
            elif isinstance(e, Beep):
                self.panel.beep(e.seconds)
            elif isinstance(e, Finalize):
                self._unfinished = e.updates
                self._finalize()
            elif isinstance(e, Remember):
                try:
                    self.ledger.set_meta(e.key, e.value)
                except LedgerError as err:  # a convenience across restarts, not a vote
                    log.error("could not remember %s: %s", e.key, err)
            else:
                self._effect(e)

    def _effect(self, e) -> None:
        """Effects only another state machine makes (the kiosk's requests and prints)."""
        raise TypeError(f"unknown effect {e!r}")

    def _finalize(self) -> None:
        """Release the held event with its reason; a refused write is retried (it blocks later sends)."""
        try:
            event = self.ledger.finalize_held(self._unfinished)
        except LedgerError as err:
            log.error("could not release the held event: %s (will retry)", err)
            return
        self._unfinished = None
        if event is not None:
            self.emit({"updated": event})

    def _store(self, e: Store) -> None:
        d = self.cfg.device
        body = {
            "v": 1, "type": e.type, "device": d.id, "site": d.site, "counter": d.counter,
            "ledger": None, "seq": None, **self.clock.stamp(), **e.fields,
        }
        event = self.ledger.append(body, held=e.held, meta=e.meta)
        if e.held and self._unfinished is not None:
            # Holding a new event released the old one: the reason its citizen chose is lost.
            log.error("a reason could not be written before the next low rating; its rating went without")
            self._unfinished = None
        self.emit({"stored": event})
        self.counter.stored(event)
        self.updates.stored(event["seq"])

    def _send_event(self, event: dict) -> bool:
        return self.uplink.publish(self.topics.event, encode(event), qos=1)

    # ----- periodic ------------------------------------------------------------------

    def _periodic(self, now: float) -> None:
        if self._unfinished is not None:
            self._finalize()
        if self.outbox.connected and now >= self._telemetry_at:
            self._telemetry_at = now + self.cfg.telemetry.interval_s
            self.uplink.publish(self.topics.telemetry, encode(self.telemetry()), qos=0)
        if self._watchdog_every and now >= self._watchdog_at:
            self._watchdog_at = now + self._watchdog_every
            systemd.watchdog_ping()
        idle = not self.counter.busy() and now - self._last_input >= self.cfg.update.idle_s
        if self.updates.tick(now, idle) == "restart":
            self.exit_code = EXIT_RESTART
            self._stopping.set()

    def telemetry(self) -> dict:
        extra = {"ledger_quarantined": str(self.ledger.quarantined)} if self.ledger.quarantined else {}
        if self.updates.telemetry() is not None:
            extra["update"] = self.updates.telemetry()
        if self.salvage is not None:
            try:
                extra.update(self.salvage.figures())
            except sqlite3.Error as err:
                log.error("salvage figures unavailable: %s", err)
        return make_telemetry(
            uptime_s=round(self.clock.since_boot(), 1),
            backlog=self.ledger.backlog(),
            clock_ok=self.clock.synced(),
            fw=__version__,
            disk_free_mb=round(shutil.disk_usage(self.cfg.device.data_dir).free / 2**20, 1),
            cpu_temp_c=cpu_temperature(),
            ts=self.clock.wall_ms(),
            ledger=self.ledger.ledger_id,
            in_flight=self.outbox.in_flight,
            **extra,
        )

    def _shutdown(self) -> None:
        systemd.stopping()
        self.uplink.stop(last_words=(self.topics.status, encode(make_status(False))))
        closers = [self.panel.close, self.display.close, self.ledger.close]
        if self.salvage is not None:
            closers.append(self.salvage.close)
        for closer in closers:
            try:
                closer()
            except Exception:  # noqa: BLE001 - close everything we can on the way out
                log.exception("error while closing")


def cpu_temperature() -> float | None:
    try:
        with open("/sys/class/thermal/thermal_zone0/temp") as f:
            return round(int(f.read().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None

"""The ingest batch: every event exactly once, the rollups in the same transaction, clocks corrected.

The ingest loop acks an event to its device only after `Store.ingest` has returned, i.e.
after the transaction holding it was committed and fsynced. A device resends until acked,
so a resend must be recognised: `(device, ledger, seq)` is unique, a resend is reported as
"duplicate" and acked again, and it never reaches the counts twice. Only events of known
devices count: the others are stored held (broker.store.held). Times and attribution follow
docs/store.md ("Only known devices count", "Time", "Attribution").
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import broker.store.deadletters as deadletters
import broker.store.dialect as dialect
import broker.store.rollups as rollups
import broker.store.tickets as tickets
from broker.store.connection import StoreBase
from broker.store.devices import SEEN
from broker.store.dialect import Connection
from broker.store.held import bindings, hold_reason
from broker.store.registry import ASSIGNED
from broker.timefix import CALENDAR_END_MS, boot_offset, corrected_ts
from common.periods import DEFAULT_TZ, local_day, zone
from protocol import ProtocolError
from protocol.codec import MAX_INT, decode
from protocol.events import LEDGER_ID_RE, decode_event

__all__ = ["Batch", "Incoming", "Ingest", "Outcome"]


@dataclass(frozen=True)
class Incoming:
    """One MQTT message from {prefix}/{topic_device}/event."""

    topic_device: str
    payload: bytes
    received_ms: int  # service wall clock when received (ms since epoch UTC)


@dataclass(frozen=True)
class Outcome:
    """What became of one message. Everything but "rejected" is stored and may be acked as stored."""

    status: str  # "stored" | "duplicate" | "conflict" (a duplicate with another body) | "rejected"
    device: str  # the topic's device id: where the ack goes
    ledger: str | None  # None when the payload was too broken to tell
    seq: int | None
    reason: str | None  # why it was rejected
    event: dict | None  # the event as stored (the first copy, for a duplicate); None when rejected
    held: str | None = None  # stored but not counted, and why (broker.store.held); None: counted


_INSERT_EVENT = """INSERT INTO events (device, ledger, seq, type, site, counter, boot, mono, ts, ts_source,
    received_ms, day, officer, officer_source, scale, score, flagged, action, reason, body, held)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_STORED = dialect.rows_by_keys("events", ("device", "ledger", "seq"), "t.device, t.ledger, t.seq, t.body")
_TOTAL = "UPDATE totals SET n = n + ? WHERE name = ?"
_CONFLICT = "conflicting duplicate: this (device, ledger, seq) is stored with a different body"


class Ingest(StoreBase):
    def ingest(self, batch: list[Incoming]) -> list[Outcome]:
        """Store a batch of event messages in ONE transaction; outcomes in batch order.

        When this returns, everything "stored" (and every dead letter) is on disk,
        so the caller may ack all of them. If it raises, nothing was stored.
        """
        if not batch:
            return []
        with self._wlock:
            with self._write() as db:
                version = self._dialect.data_version(db)
                if version != self._data_version:
                    self._zones.clear()
                    self._offsets.clear()
                    self._data_version = version
                outcomes, new_offsets = Batch(self, db).run(batch)
            # Only now that they are committed may they be cached.
            self._offsets.update(new_offsets)
            if len(self._offsets) > 200_000:  # one entry per boot of every device, forever
                self._offsets.clear()
        return outcomes

    def _zone(self, db: Connection, site: str) -> ZoneInfo:
        tz = self._zones.get(site)
        if tz is None:
            row = db.execute("SELECT tz FROM sites WHERE id = ?", (site,)).fetchone()
            tz = self._zones[site] = zone(row[0] if row else DEFAULT_TZ)
        return tz

    def _offset(self, db: Connection, device: str, boot: str) -> float | None:
        key = (device, boot)
        try:
            return self._offsets[key]
        except KeyError:
            pass
        row = db.execute("SELECT offset_ms FROM boot_offsets WHERE device = ? AND boot = ?", key).fetchone()
        offset = self._offsets[key] = None if row is None else row[0]
        return offset


class Batch:
    """The work of one `Store.ingest` call, inside its transaction."""

    def __init__(self, store: Ingest, db: Connection) -> None:
        self.store = store
        self.db = db
        self.changes: dict[str, Counter[tuple]] = {kind: Counter() for kind in rollups.KEYS}  # key -> change in n
        self.outcomes: list[Outcome | None] = []
        self.dead: list[tuple[int, tuple]] = []  # (position in the batch, dead_letters row)
        self.seen: dict[str, list] = {}  # device -> [site, counter, first_ms, last_ms]
        self.bindings: dict[str, tuple[str, str]] = {}  # registered device -> (site, counter)
        self.rejected = self.duplicates = self.conflicts = self.held = 0

    def run(self, batch: list[Incoming]) -> tuple[list[Outcome], dict[tuple[str, str], float]]:
        self.outcomes = [None] * len(batch)
        fresh = self._new_ones(self._valid(batch))
        new_offsets = self._learn_offsets(fresh)
        for (device, boot), offset in new_offsets.items():
            self._correct_boot(device, boot, offset)
        self.bindings = bindings(self.db, (ev["device"] for _, _, ev, _ in fresh))
        rows, ratings = [], []
        for i, inc, ev, payload in fresh:
            row = self._row(inc, ev, payload, new_offsets)
            held = row[-1]  # the row's last column: why it is not counted, if it is not
            if ev["type"] == "take" and held is None and self._clashes(i, inc, ev, payload, ts=row[8]):
                continue
            if ev["type"] == "rating" and ev["ticket"] and held is None and not ev["flags"]:
                ratings.append(ev)
            rows.append(row)
            self.held += held is not None
            self.outcomes[i] = Outcome("stored", inc.topic_device, ev["ledger"], ev["seq"], None, ev, held)
        self._write(rows)
        tickets.link_ratings(self.db, ratings)
        return self.outcomes, new_offsets  # type: ignore[return-value]

    def _clashes(self, i: int, inc: Incoming, ev: dict, payload: bytes, ts: int) -> bool:
        """Record a take's ticket; if its number is already held, refuse the event instead (dead letter)."""
        reason = tickets.record_take(self.db, ev, ts)
        if reason is None:
            return False
        self.rejected += 1
        self.outcomes[i] = Outcome("rejected", inc.topic_device, ev["ledger"], ev["seq"], reason, None)
        self.dead.append((i, deadletters.row(inc.received_ms, inc.topic_device, ev["ledger"], ev["seq"], reason,
                                             payload)))
        return True

    def _valid(self, batch: list[Incoming]) -> list[tuple[int, Incoming, dict, bytes]]:
        """The events that decode and come from their topic's device; the rest become dead letters.

        Only a valid event makes its sender a device that was seen: an id whose every message
        was rejected is in the dead letters, not in the device list.
        """
        valid = []
        for i, inc in enumerate(batch):
            device = inc.topic_device
            payload = bytes(inc.payload)
            try:
                ev = decode_event(payload)
            except ProtocolError as exc:
                ledger, seq = _salvage(payload)
                reason = str(exc)
            else:
                reason = _refusal(ev, device)
                if reason is None:
                    valid.append((i, inc, ev, payload))
                    self._saw(device, inc.received_ms)
                    continue
                ledger, seq = ev["ledger"], ev["seq"]
            self.rejected += 1
            self.outcomes[i] = Outcome("rejected", device, ledger, seq, reason, None)
            self.dead.append((i, deadletters.row(inc.received_ms, device, ledger, seq, reason, payload)))
        return valid

    def _saw(self, device: str, received_ms: int) -> None:
        mark = self.seen.get(device)
        if mark is None:
            self.seen[device] = [None, None, received_ms, received_ms]
        else:
            mark[2] = min(mark[2], received_ms)
            mark[3] = max(mark[3], received_ms)

    def _new_ones(self, valid) -> list[tuple[int, Incoming, dict, bytes]]:
        """The events not stored before nor earlier in the batch; the others are duplicates or conflicts."""
        stored: dict[tuple, str] = {}
        if valid:
            keys = dialect.key_list((ev["device"], ev["ledger"], ev["seq"]) for _, _, ev, _ in valid)
            for device, ledger, seq, body in self.db.execute(_STORED, (keys,)):
                stored[device, ledger, seq] = body
        fresh: dict[tuple[str, str, int], tuple[int, Incoming, dict, bytes]] = {}
        for i, inc, ev, payload in valid:
            key = (ev["device"], ev["ledger"], ev["seq"])
            first = fresh.get(key)
            if first is not None:
                kept = first[2]
            elif key in stored:
                kept = json.loads(stored[key])
            else:
                fresh[key] = (i, inc, ev, payload)
                self.seen[key[0]][:2] = ev["site"], ev["counter"]
                continue
            if kept == ev:
                self.duplicates += 1
                self.outcomes[i] = Outcome("duplicate", key[0], key[1], key[2], None, kept)
            else:
                # Same identity, different content: a device bug or tampering. The
                # first copy stays authoritative; keep this one for a human to look at.
                self.conflicts += 1
                self.outcomes[i] = Outcome("conflict", key[0], key[1], key[2], None, kept)
                self.dead.append((i, deadletters.row(inc.received_ms, *key, _CONFLICT, payload)))
        return list(fresh.values())

    def _write(self, rows: list[tuple]) -> None:
        db = self.db
        db.executemany(_INSERT_EVENT, rows)
        for kind, days in self.changes.items():
            rollups.apply(db, kind, days)
        db.executemany(SEEN, [(d, *mark) for d, mark in self.seen.items()])
        dropped = 0
        if self.dead:  # in batch order, so their ids follow arrival
            dropped = deadletters.insert(db, [row for _, row in sorted(self.dead, key=lambda d: d[0])])
        db.executemany(_TOTAL, [(len(rows), "events"), (self.duplicates, "duplicates"),
                                (self.conflicts, "conflicts"), (self.rejected, "rejected"), (self.held, "held"),
                                (len(self.dead) - dropped, "dead_letters"), (dropped, "dead_letters_dropped")])

    def _learn_offsets(self, fresh) -> dict[tuple[str, str], float]:
        """Offsets of boots whose first synchronised event is in this batch."""
        learned: dict[tuple[str, str], float] = {}
        rows = []
        for _, _, ev, _ in fresh:
            if not ev["clock_ok"]:
                continue
            key = (ev["device"], ev["boot"])
            if key in learned or self.store._offset(self.db, *key) is not None:
                continue  # the first synchronised event of a boot sets its offset for good
            learned[key] = boot_offset(ev["ts"], ev["mono"])
            rows.append((*key, learned[key], ev["ledger"], ev["seq"]))
        if rows:
            self.db.executemany(
                "INSERT INTO boot_offsets (device, boot, offset_ms, ledger, seq) VALUES (?, ?, ?, ?, ?)", rows)
        return learned

    def _correct_boot(self, device: str, boot: str, offset: float) -> None:
        """Re-time the stored events of a boot that had no good clock until now.

        Held events are re-timed too (time is a fact), but stay unattributed and uncounted.
        """
        db = self.db
        found = db.execute(
            "SELECT id, type, site, counter, mono, day, officer, officer_source, scale, score, flagged, action,"
            " held FROM events WHERE device = ? AND boot = ? AND ts_source = 'received'",
            (device, boot),
        ).fetchall()
        updates = []
        for id_, type_, site, counter, mono, day, officer, source, scale, score, flagged, action, held in found:
            ts = corrected_ts(offset, mono)
            new_day = local_day(ts, self.store._zone(db, site))
            if held is not None:
                updates.append((ts, new_day, officer, source, id_))
                continue
            new_officer, new_source = officer, source
            if source != "event":
                # It was attributed at the time it was received, which was wrong too.
                new_officer = self._assigned(site, counter, ts)
                new_source = "assignment" if new_officer is not None else None
            updates.append((ts, new_day, new_officer, new_source, id_))
            self._count(type_, site, counter, officer, day, scale, score, flagged, action, -1)
            self._count(type_, site, counter, new_officer, new_day, scale, score, flagged, action, +1)
        if updates:
            db.executemany(
                "UPDATE events SET ts = ?, ts_source = 'corrected', day = ?, officer = ?, officer_source = ?"
                " WHERE id = ?", updates)

    def _row(self, inc: Incoming, ev: dict, payload: bytes, new_offsets) -> tuple:
        device, site, counter, boot = ev["device"], ev["site"], ev["counter"], ev["boot"]
        if ev["clock_ok"]:
            ts, source = ev["ts"], "device"
        else:
            offset = new_offsets.get((device, boot))
            if offset is None:
                offset = self.store._offset(self.db, device, boot)
            if offset is not None:
                ts, source = corrected_ts(offset, ev["mono"]), "corrected"
            else:
                # Until a synchronised event of this boot arrives (maybe never), the
                # arrival time is the best guess; _correct_boot fixes it later.
                ts, source = inc.received_ms, "received"
        day = local_day(ts, self.store._zone(self.db, site))
        held = hold_reason(self.bindings.get(device), site, counter)
        officer = ev["officer"]
        officer_source = "event" if officer is not None else None
        if officer is None and held is None:  # the assignment is the counter's: only its own device speaks for it
            officer = self._assigned(site, counter, ts)
            officer_source = "assignment" if officer is not None else None
        kind = ev["type"]
        scale = score = flagged = action = reason = None
        if kind == "rating":
            scale, score, flagged, reason = ev["scale"], ev["score"], int(bool(ev["flags"])), ev["reason"]
        elif kind == "call":
            action = ev["action"]
        if held is None:
            self._count(kind, site, counter, officer, day, scale, score, flagged, action, +1)
        return (device, ev["ledger"], ev["seq"], kind, site, counter, boot, float(ev["mono"]), ts, source,
                inc.received_ms, day, officer, officer_source, scale, score, flagged, action, reason,
                payload.decode("utf-8"), held)

    def _assigned(self, site: str, counter: str, ts: int) -> str | None:
        row = self.db.execute(ASSIGNED, (site, counter, ts)).fetchone()
        return None if row is None else row[0]

    def _count(self, kind, site, counter, officer, day, scale, score, flagged, action, delta: int) -> None:
        rollups.count(self.changes, kind, site, counter, officer, day, scale, score, flagged, action, delta)


def _refusal(ev: dict, topic_device: str) -> str | None:
    """Why a valid event cannot be taken from this topic's device; None if it can."""
    if ev["device"] != topic_device:
        return f"device {ev['device']!r} in payload does not match topic device {topic_device!r} (spoofing)"
    if ev["clock_ok"] and ev["ts"] > CALENDAR_END_MS:
        # No day to count it on: taking it would stop the ingest at every redelivery.
        return f"ts {ev['ts']} is after the end of the calendar (year 9999)"
    return None


def _salvage(payload: bytes) -> tuple[str | None, int | None]:
    """Ledger and seq of an invalid event, if readable, so its device can be told to drop it."""
    try:
        obj = decode(payload)  # refuses oversized and malformed payloads outright
    except ProtocolError:
        return None, None
    ledger, seq = obj.get("ledger"), obj.get("seq")
    if not (isinstance(ledger, str) and LEDGER_ID_RE.match(ledger)):
        ledger = None
    if not (isinstance(seq, int) and not isinstance(seq, bool) and 1 <= seq <= MAX_INT):
        seq = None
    return ledger, seq

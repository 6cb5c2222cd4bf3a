"""Seeded random and mutated MQTT payloads for the payload fuzzing run (tests/test_fuzz_ingest.py),
and the oracle that says what the service must make of each.

The oracle is the wire contract (protocol.events / protocol.messages, themselves property-tested in
tests/test_fuzz_protocol.py) plus the counting policy of docs/store.md: an event counts once, only
from a registered device at the site and counter it names; identical resends are duplicates,
resends with another body conflicts; everything else is refused with a reason.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field

from protocol import ProtocolError
from protocol.codec import MAX_INT, MAX_PAYLOAD, encode
from protocol.events import decode_event, event_key, is_counted, make_event
from protocol.messages import decode_status, decode_telemetry, make_status, make_telemetry
from protocol.topics import valid_device_id

PREFIX = "hailong/v1"
# The latest time any day of the calendar can hold in every zone (a day short of year 9999's end):
# an event "from" later than that has no day to be counted on.
CALENDAR_END_MS = 253_402_128_000_000  # 9999-12-30T00:00:00Z

# Values a careless parser or store chokes on, for a field that expects something else.
WEIRD = [
    None, True, False, 0, -1, 1, 2**31, 2**53 - 1, 2**53, 2**63, 2**64, -(2**63), 10**30, 0.5, -0.0, 1e308,
    -1e308, "", " ", "\x00", "\u202e", "a" * 300, "x" * 5000, "<script>alert(1)</script>", '"><img src=x>',
    "=HYPERLINK(\"http://x\")", "../../etc/passwd", "\r\nX-Injected: 1", [], {}, [1, 2], {"a": {"b": [None]}},
    "0123456789abcdef", "ffffffffffffffff", "rating", "call", ["repeat"], ["chord", "repeat"], 3, 4, 5,
]
# Raw JSON text a Python dict cannot produce: spliced into a payload as a field's value.
RAW_VALUES = [b"NaN", b"-Infinity", b"Infinity", b"1e999", b"-1e999", b"9" * 5000, b"1" + b"0" * 400,
              b'"\\ud800"', b'"\\u0000"', b"[" * 5000 + b"]" * 5000, b"{}" * 2]


@dataclass
class Sent:
    topic: str
    kind: str  # event | status | telemetry
    device: str  # the topic's device id
    payload: bytes
    category: str  # how it was made, for the report


@dataclass
class Expected:
    """What the service must report once every payload is in."""

    events: Counter = field(default_factory=Counter)  # stored | held | duplicate | conflict | rejected
    counted: Counter = field(default_factory=Counter)  # (site, counter, scale, score) of counted ratings
    health_rejected: Counter = field(default_factory=Counter)  # status/telemetry refused, by kind
    valid_sent: int = 0  # events made valid on purpose by registered devices, each counted once


class PayloadFuzzer:
    """Makes `n` payloads from a seed: valid events of registered devices interleaved with hostile ones."""

    def __init__(self, seed: int, registered: dict[str, tuple[str, str]], unregistered: list[str], now_ms: int):
        self.rnd = random.Random(seed)
        self.registered = registered
        self.devices = sorted(registered) + list(unregistered)
        self.now_ms = now_ms
        self.seq: Counter = Counter()
        self.ledgers = {d: f"{i + 1:016x}" for i, d in enumerate(self.devices)}
        self.sent_valid: list[dict] = []  # valid events already made, for resends and replays
        self.expected = Expected()
        self._seen: dict[tuple, dict] = {}

    # ----- building blocks ---------------------------------------------------------------------

    def event(self, device: str, site: str | None = None, counter: str | None = None) -> dict:
        """A valid event of `device`, at its registered counter unless told otherwise."""
        r = self.rnd
        site_, counter_ = self.registered.get(device, ("s1", "1"))
        self.seq[device] += 1
        seq = self.seq[device]
        kind = r.choices(["rating", "call", "signin", "signout"], [8, 2, 1, 1])[0]
        fields: dict = {}
        if kind == "rating":
            scale = r.choice([3, 4, 5])
            fields = dict(scale=scale, score=r.randint(1, scale), flags=r.choice([[], [], [], ["repeat"], ["chord"]]),
                          reason=r.choice([None, None, "Chờ lâu", "<b>rude</b>"]))
        elif kind == "call":
            fields = dict(action=r.choice(["next", "recall", "close"]))
        else:
            fields = dict(method="badge", badge=f"{r.getrandbits(32):08X}")
        clock_ok = r.random() < 0.9
        ev = make_event(kind, device=device if valid_device_id(device) else "odd", site=site or site_,
                        counter=counter or counter_, ledger=self.ledgers[device], seq=seq,
                        ts=self.now_ms - r.randint(0, 3_600_000), clock_ok=clock_ok, boot=f"boot-{self.devices.index(device)}",
                        mono=float(seq), officer=r.choice([None, "o1"]), ticket=None, **fields)
        # A topic level that is no device id makes an invalid event, but one whose ledger and seq
        # can still be read (and acked, were the topic an address).
        return ev if valid_device_id(device) else {**ev, "device": device}

    def _topic(self, device: str, kind: str) -> str:
        return f"{PREFIX}/{device}/{kind}"

    def _sent(self, device: str, kind: str, payload: bytes, category: str) -> Sent:
        sent = Sent(self._topic(device, kind), kind, device, payload, category)
        self._expect(sent)
        return sent

    # ----- the oracle --------------------------------------------------------------------------

    def _expect(self, sent: Sent) -> None:
        if sent.kind == "event":
            self.expected.events[self._event_fate(sent)] += 1
            return
        if sent.kind == "status" and not sent.payload:
            return  # a cleared retained status: nothing to check
        decode = decode_status if sent.kind == "status" else decode_telemetry
        try:
            decode(sent.payload)
        except ProtocolError:
            self.expected.health_rejected[sent.kind] += 1

    def _event_fate(self, sent: Sent) -> str:
        try:
            ev = decode_event(sent.payload)
        except ProtocolError:
            return "rejected"
        if ev["device"] != sent.device:
            return "rejected"  # spoofing
        if ev["clock_ok"] and ev["ts"] > CALENDAR_END_MS:
            return "rejected"  # no day of the calendar to count it on
        key = event_key(ev)
        first = self._seen.get(key)
        if first is not None:
            return "duplicate" if first == ev else "conflict"
        self._seen[key] = ev
        if self.registered.get(ev["device"]) != (ev["site"], ev["counter"]):
            return "held"
        if is_counted(ev):
            self.expected.counted[ev["site"], ev["counter"], ev["scale"], ev["score"]] += 1
        return "stored"

    # ----- the payloads ------------------------------------------------------------------------

    def payloads(self, n: int):
        makers = [(self.valid, 30), (self.valid_elsewhere, 4), (self.resend, 4), (self.altered_resend, 4),
                  (self.spoofed, 4), (self.replayed_as_own, 3), (self.one_field, 18), (self.one_field_raw, 6),
                  (self.broken_bytes, 10), (self.health, 14), (self.oversized, 1)]
        funcs, weights = zip(*makers)
        for _ in range(n):
            yield self.rnd.choices(funcs, weights)[0]()

    def valid(self) -> Sent:
        device = self.rnd.choice(sorted(self.registered))
        ev = self.event(device)
        self.sent_valid.append(ev)
        self.expected.valid_sent += 1
        return self._sent(device, "event", encode(ev), "valid")

    def valid_elsewhere(self) -> Sent:
        """Valid, but from a device nobody registered, or naming a counter it is not registered at."""
        device = self.rnd.choice(self.devices)
        ev = self.event(device, counter="99" if device in self.registered else None)
        return self._sent(device, "event", encode(ev), "unregistered or misbound")

    def _earlier(self) -> dict | None:
        return self.rnd.choice(self.sent_valid) if self.sent_valid else None

    def resend(self) -> Sent:
        ev = self._earlier() or self.event(sorted(self.registered)[0])
        return self._sent(ev["device"], "event", encode(ev), "duplicate")

    def altered_resend(self) -> Sent:
        ev = dict(self._earlier() or self.event(sorted(self.registered)[0]))
        if ev["type"] == "rating":
            ev["score"] = ev["scale"] + 1 - ev["score"] if ev["scale"] + 1 != 2 * ev["score"] else 1
            ev["reason"] = "changed"
        else:
            ev["officer"] = "someone-else"
        return self._sent(ev["device"], "event", encode(ev), "duplicate with another body")

    def spoofed(self) -> Sent:
        ev = self._earlier() or self.event(sorted(self.registered)[0])
        device = self.rnd.choice([d for d in self.devices if d != ev["device"]])
        return self._sent(device, "event", encode(ev), "spoofed device")

    def replayed_as_own(self) -> Sent:
        """Another device's event, its device field rewritten to the sender's: same ledger and seq."""
        ev = self._earlier() or self.event(sorted(self.registered)[0])
        device = self.rnd.choice([d for d in self.devices if d != ev["device"]])
        return self._sent(device, "event", encode({**ev, "device": device}), "replayed from another device")

    def one_field(self) -> Sent:
        r = self.rnd
        device = r.choice(self.devices)
        ev = self.event(device)
        name = r.choice(sorted(ev) + ["badge", "flags", "extra"])
        if r.random() < 0.2:
            ev.pop(name, None)
        else:
            ev[name] = r.choice(WEIRD)
        try:
            payload = encode(ev)
        except ProtocolError:
            payload = json.dumps(ev, ensure_ascii=True).encode()  # a lone surrogate, escaped
        return self._sent(device, "event", payload, "one field mutated")

    def one_field_raw(self) -> Sent:
        r = self.rnd
        device = r.choice(self.devices)
        ev = self.event(device)
        name = r.choice(sorted(ev))
        marker = "\x01MARK\x01"
        text = encode({**ev, name: marker})
        payload = text.replace(json.dumps(marker).encode(), r.choice(RAW_VALUES))
        return self._sent(device, "event", payload, "raw value (NaN, huge, deep)")

    def broken_bytes(self) -> Sent:
        r = self.rnd
        device = r.choice(self.devices)
        data = encode(self.event(device))
        how = r.randrange(8)
        if how == 0:
            payload = bytes(r.getrandbits(8) for _ in range(r.randint(0, 200)))
        elif how == 1:
            at = r.randrange(len(data))
            payload = data[:at] + bytes([r.choice([0x80, 0xC0, 0xFF, 0xED])]) + data[at:]
        elif how == 2:
            payload = data[: r.randrange(len(data))]
        elif how == 3:
            payload = data[:-1] + b',"seq":1}'  # a duplicate key
        elif how == 4:
            payload = r.choice([b"", b"null", b"[]", b"1", b'"x"', b"true", b"[" + data + b"]"])
        elif how == 5:
            payload = b"[" * 30_000 + b"]" * 30_000
        elif how == 6:
            at = r.randrange(len(data))
            payload = data[:at] + bytes([data[at] ^ (1 << r.randrange(8))]) + data[at + 1:]
        else:
            payload = data.replace(b'"', b"'", 1)
        return self._sent(device, "event", payload, "broken bytes")

    def oversized(self) -> Sent:
        device = self.rnd.choice(self.devices)
        ev = self.event(device)
        ev["reason"] = "x" * (MAX_PAYLOAD + self.rnd.randint(1, 50_000))
        return self._sent(device, "event", json.dumps(ev).encode(), "oversized")

    def health(self) -> Sent:
        """Status and telemetry: valid, mutated or garbage."""
        r = self.rnd
        device = r.choice(self.devices)
        kind = r.choice(["status", "telemetry"])
        if kind == "status":
            msg = r.choice([make_status(True, "1.0", self.ledgers[device], self.now_ms), make_status(False)])
        else:
            msg = make_telemetry(uptime_s=12.5, backlog=r.randint(0, 10), clock_ok=True, fw="1.0",
                                 disk_free_mb=100.0, cpu_temp_c=None, ts=self.now_ms, ledger=self.ledgers[device])
        how = r.randrange(4)
        if how == 0:
            payload, category = encode(msg), f"valid {kind}"
        elif how in (1, 2):
            name = r.choice(sorted(msg) + ["online", "extra"])
            mutated = {**msg, name: r.choice(WEIRD)}
            try:
                payload = encode(mutated)
            except ProtocolError:
                payload = json.dumps(mutated).encode()
            category = f"{kind}: one field mutated"
        else:
            payload = r.choice([b"", b"{", b"\xff", b"[]", b'{"online": NaN}', b"[" * 30_000,
                                b'{"online": true, "online": false}', encode(msg)[:-3]])
            category = f"{kind}: broken bytes"
        return self._sent(device, kind, payload, category)


def valid_counted_check(expected: Expected, rows: list[dict]) -> list[str]:
    """Differences between the oracle's counted ratings and the service's satisfaction rows (by counter)."""
    want: Counter = Counter()
    for (site, counter, _scale, score), n in expected.counted.items():
        want[f"{site}/{counter}", score] += n
    got: Counter = Counter()
    for row in rows:
        for score, n in (row.get("counts") or {}).items():
            if n:
                got[row["key"], int(score)] += n
    return [f"{key} score {score}: expected {want[key, score]}, counted {got[key, score]}"
            for key, score in sorted(set(want) | set(got)) if want[key, score] != got[key, score]]


__all__ = ["CALENDAR_END_MS", "Expected", "MAX_INT", "PayloadFuzzer", "Sent", "valid_counted_check"]

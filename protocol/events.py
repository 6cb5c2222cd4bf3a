"""Ledger events: what a counter device records and publishes on `<prefix>/<id>/event`.

An event is identified forever by (device, ledger, seq). The device keeps it
on disk until an ack names that seq, so the same event may arrive many times;
the service deduplicates on `event_key`.
"""

from __future__ import annotations

import re

from protocol import PROTOCOL_VERSION
from protocol.codec import (
    _check_bool,
    _check_choice,
    _check_int,
    _check_number,
    _check_pattern,
    _check_str,
    _get,
    _need_object,
    _show,
    decode,
    json_type,
)
from protocol.errors import ProtocolError
from protocol.tickets import TAKE_SOURCES, check_date, check_queue_id, check_ticket
from protocol.topics import DEVICE_ID_RE

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time, to keep imports cheap
    from typing import Any

__all__ = [
    "BADGE_RE",
    "CALL_ACTIONS",
    "EVENT_TYPES",
    "LEDGER_ID_RE",
    "MAX_REASON",
    "RATING_FLAGS",
    "SCALES",
    "SIGN_METHODS",
    "check_ledger",
    "decode_event",
    "event_key",
    "is_counted",
    "make_event",
    "validate_event",
]

EVENT_TYPES = ("rating", "call", "signin", "signout", "take")
# Tuple order is also the only order allowed on the wire, so a flagged
# rating has exactly one spelling.
RATING_FLAGS = ("repeat", "chord")
CALL_ACTIONS = ("next", "recall", "close", "noshow")
SIGN_METHODS = ("badge", "central")
SCALES = (3, 4, 5)
MAX_REASON = 200

# 64 random bits chosen when a ledger (the device's event store) is created.
LEDGER_ID_RE = re.compile(r"\A[0-9a-f]{16}\Z")
BADGE_RE = re.compile(r"\A[0-9A-Fa-f]{1,32}\Z")

_COMMON = ("v", "type", "device", "site", "counter", "ledger", "seq", "ts", "clock_ok", "boot", "mono", "officer", "ticket")
_SPECIFIC = {
    "rating": ("score", "scale", "flags", "reason"),
    "call": ("action",),
    "signin": ("method", "badge"),
    "signout": ("method", "badge"),
    "take": ("queue", "priority", "source", "date"),
}


def check_ledger(value: object, name: str = "ledger") -> str:
    """Return `value` if it is a ledger id (16 lowercase hex digits), else raise ProtocolError."""
    return _check_pattern(value, name, LEDGER_ID_RE, "16 lowercase hex digits")


def validate_event(obj: object) -> dict[str, Any]:
    """Return `obj` unchanged if it is a valid v1 event; ProtocolError naming the first bad field otherwise.

    Fields not in the contract are ignored, so a newer device can add fields
    without breaking an older service.
    """
    ev = _need_object(obj, "event")
    # Version first: a future event may be shaped differently, and "missing
    # score" would hide the real problem.
    v = _check_int(_get(ev, "v"), "v", lo=None)
    if v != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported version {v}", "v")
    kind = _check_choice(_get(ev, "type"), "type", EVENT_TYPES)

    _check_pattern(
        _get(ev, "device"),
        "device",
        DEVICE_ID_RE,
        "a device id (1-64 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit)",
    )
    _check_str(_get(ev, "site"), "site")
    _check_str(_get(ev, "counter"), "counter")
    check_ledger(_get(ev, "ledger"))
    _check_int(_get(ev, "seq"), "seq", lo=1)
    _check_int(_get(ev, "ts"), "ts", lo=0)
    _check_bool(_get(ev, "clock_ok"), "clock_ok")
    _check_str(_get(ev, "boot"), "boot")
    _check_number(_get(ev, "mono"), "mono", lo=0)
    _check_str(_get(ev, "officer"), "officer", 1, 64, nullable=True)
    _check_str(_get(ev, "ticket"), "ticket", 1, 16, nullable=True)

    if kind == "rating":
        _validate_rating(ev)
    elif kind == "call":
        _check_choice(_get(ev, "action"), "action", CALL_ACTIONS)
    elif kind == "take":
        _validate_take(ev)
    else:
        method = _check_choice(_get(ev, "method"), "method", SIGN_METHODS)
        # Central sign-ins come from the service's own roster, so there is no
        # card to report; a badge sign-in is meaningless without one.
        if "badge" in ev or method == "badge":
            _check_pattern(_get(ev, "badge"), "badge", BADGE_RE, "1-32 hex digits")
    return ev


def _validate_rating(ev: dict[str, Any]) -> None:
    # Scale before score: the score's range depends on it.
    scale = _check_int(_get(ev, "scale"), "scale", SCALES[0], SCALES[-1])
    _check_int(_get(ev, "score"), "score", 1, scale)
    flags = _get(ev, "flags")
    if not isinstance(flags, list):
        raise ProtocolError(f"expected array, got {json_type(flags)}", "flags")
    for flag in flags:
        _check_choice(flag, "flags", RATING_FLAGS)
    if len(set(flags)) != len(flags):
        raise ProtocolError(f"flags {_show(flags)} has duplicates", "flags")
    if flags != [f for f in RATING_FLAGS if f in flags]:
        raise ProtocolError(f"flags {_show(flags)} must be in the order {', '.join(RATING_FLAGS)}", "flags")
    _check_str(_get(ev, "reason"), "reason", 1, MAX_REASON, nullable=True)


def _validate_take(ev: dict[str, Any]) -> None:
    # The ticket the kiosk printed: a take without one would be a citizen nobody can call.
    check_ticket(_get(ev, "ticket"))
    check_queue_id(_get(ev, "queue"))
    _check_bool(_get(ev, "priority"), "priority")
    _check_choice(_get(ev, "source"), "source", TAKE_SOURCES)
    check_date(_get(ev, "date"))


def decode_event(payload: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Decode and validate an event payload (codec.decode + validate_event)."""
    return validate_event(decode(payload))


def event_key(ev: dict[str, Any]) -> tuple[str, str, int]:
    """(device, ledger, seq): the identity of an event, stable across resends and reboots."""
    return (ev["device"], ev["ledger"], ev["seq"])


def is_counted(ev: dict[str, Any]) -> bool:
    """True for a rating that counts towards satisfaction figures: one with no flags."""
    return ev.get("type") == "rating" and not ev.get("flags")


def make_event(
    type: str,
    *,
    device: str,
    site: str,
    counter: str,
    ledger: str,
    seq: int,
    ts: int,
    clock_ok: bool,
    boot: str,
    mono: float,
    officer: str | None = None,
    ticket: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Build a validated event with keys in canonical order.

    `fields` carries the type-specific fields (rating: score, scale, flags,
    reason; call: action; signin/signout: method, badge; take: queue,
    priority, source, date), then any extras,
    which are kept in the order given. For a rating, `flags` defaults to []
    (and is put in canonical order) and `reason` to None.
    """
    reserved = set(_COMMON).intersection(fields)
    if reserved:
        raise TypeError(f"make_event() got reserved field(s) {', '.join(sorted(reserved))}")
    ev: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "type": type,
        "device": device,
        "site": site,
        "counter": counter,
        "ledger": ledger,
        "seq": seq,
        "ts": ts,
        "clock_ok": clock_ok,
        "boot": boot,
        "mono": mono,
        "officer": officer,
        "ticket": ticket,
    }
    if type == "rating":
        flags = fields.get("flags", [])
        if isinstance(flags, (list, tuple, set, frozenset)) and all(isinstance(f, str) for f in flags):
            # Order by the contract, not by the caller, so equal ratings encode equally.
            rank = {f: i for i, f in enumerate(RATING_FLAGS)}
            flags = sorted(flags, key=lambda f: rank.get(f, len(rank)))
        fields["flags"] = flags
        fields.setdefault("reason", None)
    for key in _SPECIFIC.get(type, ()):
        if key in fields:
            ev[key] = fields.pop(key)
    ev.update(fields)
    return validate_event(ev)

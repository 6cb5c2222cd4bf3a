"""Every payload except events: ack, status, telemetry, cmd and assignment.

Each kind has `validate_*` (returns the dict if valid, ProtocolError naming
the first bad field otherwise; unknown fields are ignored and kept),
`decode_*` (codec.decode + validate) and, where a sender builds it from
parts, `make_*` (builds, orders and validates).
"""

from __future__ import annotations

import re

from protocol.codec import (
    _FORBIDDEN_RE,
    _check_bool,
    _check_choice,
    _check_int,
    _check_number,
    _check_str,
    _get,
    _join,
    _need_object,
    _show,
    decode,
    json_type,
)
from protocol.errors import ProtocolError
from protocol.events import MAX_REASON, check_ledger
from protocol.tickets import (
    MAX_NUMBER,
    PRINTER_STATES,
    check_date,
    check_queue_id,
    check_queue_prefix,
    check_request_id,
    check_ticket,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time, to keep imports cheap
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = [
    "COMMANDS",
    "MAX_IDENTIFY_SECONDS",
    "TELEMETRY_SALVAGE",
    "UPDATE_STATES",
    "decode_ack",
    "decode_assignment",
    "decode_command",
    "decode_status",
    "decode_telemetry",
    "make_ack",
    "make_assignment",
    "make_command",
    "make_status",
    "make_telemetry",
    "validate_ack",
    "validate_assignment",
    "validate_command",
    "validate_officer",
    "validate_status",
    "validate_telemetry",
]

COMMANDS = ("display", "ticket", "officer", "identify", "number", "block", "update")
# An update's version: what common/release.py accepts (numbers and dots), so the counter can order it.
UPDATE_VERSION_RE = re.compile(r"\A\d{1,6}(\.\d{1,6}){0,3}\Z")
UPDATE_STATES = ("downloading", "installing", "staged", "pending", "committed", "rolled_back", "refused", "failed")
MAX_SIGNATURE = 1024
MAX_IDENTIFY_SECONDS = 600

_TELEMETRY = ("uptime_s", "backlog", "clock_ok", "fw", "disk_free_mb", "cpu_temp_c", "ts", "ledger")
# Votes rescued from quarantined ledgers (docs/protocol.md, "Telemetry").
TELEMETRY_SALVAGE = ("salvaged", "salvage_pending", "salvage_unreadable")

# --- ack: service -> device ------------------------------------------------


def _clean(text: str) -> str:
    return _FORBIDDEN_RE.sub("\ufffd", text)


def make_ack(
    ledger: str,
    seqs: Iterable[int],
    rejected: Iterable[Mapping[str, Any] | tuple[int, str]] = (),
) -> dict[str, Any]:
    """Build an ack for `seqs` of `ledger`.

    `rejected` holds {"seq": n, "reason": text} mappings or (n, text) pairs.
    Reasons longer than MAX_REASON are cut, and characters no text field may
    hold are replaced by U+FFFD, since reasons usually come from exception
    text and must never stop the ack itself from being sent.
    The "rejected" key is left out when there is nothing to report.
    """
    ack: dict[str, Any] = {"ledger": ledger, "seqs": list(seqs)}
    entries = []
    for item in rejected:
        if isinstance(item, tuple):
            seq, reason = item
        else:
            seq, reason = item["seq"], item["reason"]
        if isinstance(reason, str):
            if len(reason) > MAX_REASON:
                reason = reason[: MAX_REASON - 3] + "..."
            reason = _clean(reason)
        entries.append({"seq": seq, "reason": reason})
    if entries:
        ack["rejected"] = entries
    validate_ack(ack)  # checks only; its result would add the "rejected" key back
    return ack


def validate_ack(obj: object) -> dict[str, Any]:
    """Validate an ack; the result always has a "rejected" list (a copy is made to add it)."""
    ack = _need_object(obj, "ack")
    check_ledger(_get(ack, "ledger"))
    seqs = _get(ack, "seqs")
    if not isinstance(seqs, list):
        raise ProtocolError(f"expected array, got {json_type(seqs)}", "seqs")
    for i, seq in enumerate(seqs):
        _check_int(seq, f"seqs[{i}]", lo=1)
    if "rejected" not in ack:
        return {**ack, "rejected": []}
    rejected = ack["rejected"]
    if not isinstance(rejected, list):
        raise ProtocolError(f"expected array, got {json_type(rejected)}", "rejected")
    for i, entry in enumerate(rejected):
        path = f"rejected[{i}]"
        if not isinstance(entry, dict):
            raise ProtocolError(f"expected object, got {json_type(entry)}", path)
        _check_int(_get(entry, "seq", path), _join(path, "seq"), lo=1)
        _check_str(_get(entry, "reason", path), _join(path, "reason"), 1, MAX_REASON)
    return ack


def decode_ack(payload: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """codec.decode + validate_ack."""
    return validate_ack(decode(payload))


# --- status: device -> everyone, retained ----------------------------------


def make_status(online: bool, fw: str | None = None, ledger: str | None = None, ts: int | None = None) -> dict[str, Any]:
    """Build a status; `make_status(False)` is the MQTT will, `{"online": false}`.

    An online status needs fw, ledger and ts; an offline one carries
    whichever of them are given.
    """
    status: dict[str, Any] = {"online": online}
    for key, value in (("fw", fw), ("ledger", ledger), ("ts", ts)):
        if value is not None or online is True:
            status[key] = value
    return validate_status(status)


def validate_status(obj: object) -> dict[str, Any]:
    """Validate a status. fw, ledger and ts are required when online, checked if present when offline."""
    status = _need_object(obj, "status")
    online = _check_bool(_get(status, "online"), "online")
    # The broker publishes the will on the device's behalf, so an offline
    # status may be nothing but {"online": false}.
    if online or "fw" in status:
        _check_str(_get(status, "fw"), "fw")
    if online or "ledger" in status:
        check_ledger(_get(status, "ledger"))
    if online or "ts" in status:
        _check_int(_get(status, "ts"), "ts", lo=0)
    return status


def decode_status(payload: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """codec.decode + validate_status."""
    return validate_status(decode(payload))


# --- telemetry: device -> service, QoS 0 -----------------------------------


def make_telemetry(**fields: Any) -> dict[str, Any]:
    """Build validated telemetry: the contract's fields in canonical order, then extras as given."""
    telemetry = {key: fields.pop(key) for key in _TELEMETRY if key in fields}
    telemetry.update(fields)
    return validate_telemetry(telemetry)


def validate_telemetry(obj: object) -> dict[str, Any]:
    """Validate a telemetry sample."""
    t = _need_object(obj, "telemetry")
    _check_number(_get(t, "uptime_s"), "uptime_s", lo=0)
    _check_int(_get(t, "backlog"), "backlog", lo=0)
    _check_bool(_get(t, "clock_ok"), "clock_ok")
    _check_str(_get(t, "fw"), "fw")
    _check_number(_get(t, "disk_free_mb"), "disk_free_mb", lo=0)
    temp = _get(t, "cpu_temp_c")
    if temp is not None:  # not every board exposes a sensor
        _check_number(temp, "cpu_temp_c", lo=None)
    _check_int(_get(t, "ts"), "ts", lo=0)
    check_ledger(_get(t, "ledger"))
    for key in TELEMETRY_SALVAGE:  # optional: present once a ledger was ever quarantined
        if key in t:
            _check_int(t[key], key, lo=0)
    if "printer" in t:  # kiosks only
        _check_choice(t["printer"], "printer", PRINTER_STATES)
    if "update" in t:  # optional: present once the counter was ever sent an update
        _check_update_status(t["update"])
    return t


def _check_update_status(u: object) -> None:
    if not isinstance(u, dict):
        raise ProtocolError(f"expected object, got {json_type(u)}", "update")
    _check_str(_get(u, "version", "update"), "update.version", 1, 32)
    state = _get(u, "state", "update")
    if state not in UPDATE_STATES:
        raise ProtocolError(f"unknown update state {_show(state)}, expected one of {', '.join(UPDATE_STATES)}",
                            "update.state")
    error = u.get("error")
    if error is not None:
        _check_str(error, "update.error", 0, 2000)


def decode_telemetry(payload: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """codec.decode + validate_telemetry."""
    return validate_telemetry(decode(payload))


# --- officer object (inside cmd and assignment) ----------------------------


def validate_officer(obj: object, name: str = "officer") -> dict[str, Any] | None:
    """Return `obj` if it is null or an officer object {"id", "name", "code"}; `name` prefixes error fields."""
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ProtocolError(f"expected object or null, got {json_type(obj)}", name)
    _check_str(_get(obj, "id", name), _join(name, "id"), 1, 64)
    _check_str(_get(obj, "name", name), _join(name, "name"), 0, 100)
    _check_str(_get(obj, "code", name), _join(name, "code"), 1, 8)
    return obj


# --- cmd: service -> device --------------------------------------------------


def validate_command(obj: object) -> dict[str, Any]:
    """Validate a command; an unknown "cmd" is an error, since the device could not obey it."""
    c = _need_object(obj, "command")
    cmd = _get(c, "cmd")
    if not isinstance(cmd, str):
        raise ProtocolError(f"expected string, got {json_type(cmd)}", "cmd")
    if cmd not in COMMANDS:
        raise ProtocolError(f"unknown command {_show(cmd)}, expected one of {', '.join(COMMANDS)}", "cmd")
    if cmd == "display":
        _check_str(_get(c, "ticket"), "ticket", 1, 16)
    elif cmd == "ticket":
        _check_str(_get(c, "ticket"), "ticket", 1, 16)
        _check_int(_get(c, "seq"), "seq", lo=1)
        if "idle" in c:  # nobody waiting in the counter's queues; old counters just show the ticket
            _check_bool(c["idle"], "idle")
    elif cmd == "officer":
        validate_officer(_get(c, "officer"))
    elif cmd == "identify":
        _check_number(_get(c, "seconds"), "seconds", 1, MAX_IDENTIFY_SECONDS)
    elif cmd == "number":
        _validate_number(c)
    elif cmd == "block":
        _validate_block(c)
    else:
        _check_update(c)
    return c


def _validate_number(c: dict[str, Any]) -> None:
    check_request_id(_get(c, "req"))
    if "error" in c:  # refused: the kiosk falls back to its block
        _check_str(c["error"], "error", 1, MAX_REASON)
        return
    check_queue_id(_get(c, "queue"))
    check_ticket(_get(c, "ticket"))
    _check_int(_get(c, "ahead"), "ahead", lo=0)
    check_date(_get(c, "date"))


def _validate_block(c: dict[str, Any]) -> None:
    if "req" in c:
        check_request_id(c["req"])
    check_queue_id(_get(c, "queue"))
    check_queue_prefix(_get(c, "prefix"))
    check_date(_get(c, "date"))
    first = _check_int(_get(c, "first"), "first", 1, MAX_NUMBER)
    _check_int(_get(c, "last"), "last", first, MAX_NUMBER)


def _check_update(c: dict) -> None:
    version = _check_str(_get(c, "version"), "version", 1, 32)
    if not UPDATE_VERSION_RE.match(version):
        raise ProtocolError(f"version {_show(version)} is not numbers separated by dots", "version")
    url = _check_str(_get(c, "url"), "url", 1, 500)
    if not url.startswith(("http://", "https://")):
        raise ProtocolError(f"url {_show(url)} is not http(s)", "url")
    _check_str(_get(c, "signature"), "signature", 1, MAX_SIGNATURE)
    if "allow_downgrade" in c:
        _check_bool(c["allow_downgrade"], "allow_downgrade")


def make_command(cmd: str, **fields: Any) -> dict[str, Any]:
    """Build a validated command, e.g. make_command("ticket", ticket="A012", seq=41)."""
    return validate_command({"cmd": cmd, **fields})


def decode_command(payload: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """codec.decode + validate_command."""
    return validate_command(decode(payload))


# --- assignment: service -> device, retained --------------------------------


def make_assignment(officer: Mapping[str, Any] | None, ts: int | None = None) -> dict[str, Any]:
    """Build the retained assignment of `officer` (None: nobody) to a counter."""
    assignment: dict[str, Any] = {"officer": None if officer is None else dict(officer)}
    if ts is not None:
        assignment["ts"] = ts
    return validate_assignment(assignment)


def validate_assignment(obj: object) -> dict[str, Any]:
    """Validate an assignment: {"officer": officer-object or null}, optional "ts"."""
    a = _need_object(obj, "assignment")
    validate_officer(_get(a, "officer"))
    if "ts" in a:
        _check_int(a["ts"], "ts", lo=0)
    return a


def decode_assignment(payload: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """codec.decode + validate_assignment, except that an empty payload means "nobody assigned".

    Publishing an empty retained message is how MQTT deletes a retained
    message, and a device receives exactly that when the service clears it.
    """
    if isinstance(payload, (bytes, bytearray, memoryview, str)) and len(payload) == 0:
        return {"officer": None}
    return validate_assignment(decode(payload))

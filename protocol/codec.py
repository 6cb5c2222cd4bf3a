"""Bytes <-> dict for every payload, plus the field checks the validators share.

One encoding for everyone: compact UTF-8 JSON with the caller's key order.
Decoding is strict, because anything that slips through here ends up in the
ledger database or on a counter display.
"""

from __future__ import annotations

import json
import math
import re

from protocol.errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time, to keep imports cheap
    from typing import Any

__all__ = ["MAX_PAYLOAD", "MAX_INT", "TEXT_PATTERN", "decode", "encode", "forbidden_char", "json_type"]

MAX_PAYLOAD = 65536

# The largest integer every JSON consumer (including a browser dashboard)
# reads exactly; also keeps values far inside SQLite's 64-bit INTEGER.
MAX_INT = 2**53 - 1

_MAX_SHOWN = 60
_MAX_DOUBLE = 1.7976931348623157e308  # sys.float_info.max, without importing sys

# What no text field may hold: control characters (Unicode category Cc: C0, DEL, C1), the line
# and paragraph separators (they break a line where nobody expects one: logs, CSV, JavaScript
# strings) and lone surrogates (no encoder can write them). Names and reasons end up on an
# 8x32 display, in spreadsheets and in XML, where any of these is garbage or an error.
_CONTROL = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
# The control part as a whole-string pattern, in the syntax Python, JSON Schema (ECMA 262) and
# pydantic's regex engine share, for schemas that must refuse what the wire refuses. It leaves
# out surrogates, which that engine cannot name; text decoded from JSON or a URL holds none.
TEXT_PATTERN = f"^[^{_CONTROL}]*$"
_FORBIDDEN_RE = re.compile(f"[{_CONTROL}\\ud800-\\udfff]")


def encode(obj: object) -> bytes:
    """Serialise `obj` as compact UTF-8 JSON, keeping its key order.

    Raises ProtocolError for values JSON cannot carry (NaN, infinities,
    unpaired surrogates, non-serialisable objects) and for results larger
    than MAX_PAYLOAD, so a sender fails loudly instead of the receiver.
    """
    try:
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise ProtocolError(f"cannot encode as JSON: {exc}") from exc
    if len(data) > MAX_PAYLOAD:
        raise ProtocolError(f"encoded payload is {len(data)} bytes, over the {MAX_PAYLOAD}-byte limit")
    return data


def _reject_constant(name: str) -> float:
    raise ProtocolError(f"{name} is not allowed in JSON payloads")


def _finite_float(text: str) -> float:
    value = float(text)
    # A literal such as 1e999 overflows to infinity, which is NaN's cousin.
    if not math.isfinite(value):
        raise ProtocolError(f"number {text[:_MAX_SHOWN]} is out of range")
    return value


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # Parsers disagree on which duplicate wins; refusing them means the
        # device, the service and any debugging tool all see the same event.
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ProtocolError(f"duplicate key {_show(key)}")
            seen.add(key)
    return obj


def decode(payload: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parse a payload that must be one JSON object; ProtocolError otherwise."""
    if isinstance(payload, str):
        try:
            data = payload.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ProtocolError(f"payload is not valid UTF-8 text: unpaired surrogate at index {exc.start}") from None
    elif isinstance(payload, (bytes, bytearray, memoryview)):
        data = bytes(payload)
    else:
        raise ProtocolError(f"payload must be bytes or str, got {type(payload).__name__}")
    if len(data) > MAX_PAYLOAD:
        raise ProtocolError(f"payload is {len(data)} bytes, over the {MAX_PAYLOAD}-byte limit")
    if not data:
        raise ProtocolError("empty payload")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"payload is not valid UTF-8: bad byte at offset {exc.start}") from None
    try:
        obj = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_object,
        )
    except ProtocolError:
        raise
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ProtocolError("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal beyond int's digit limit
        raise ProtocolError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"payload must be a JSON object, got {json_type(obj)}")
    return obj


def forbidden_char(text: str) -> str | None:
    """A description of the first character `text` may not hold ("U+0001 at 3"), or None if it is clean."""
    found = _FORBIDDEN_RE.search(text)
    if found is None:
        return None
    return f"U+{ord(found.group()):04X} at {found.start()}"


def json_type(value: object) -> str:
    """The JSON name of a value's type ("integer", "string", ...), for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# ---------------------------------------------------------------------------
# Field checks shared by protocol.events and protocol.messages. Private to the
# package: their signatures may change without notice.
#
# `name` is the field's full (dotted) name, used as ProtocolError.field; the
# reason repeats only the last part, so "officer.id: id length 0 ..." reads
# naturally.


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _leaf(name: str) -> str:
    return name.rpartition(".")[2]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _wrong_type(expected: str, value: object, name: str) -> ProtocolError:
    return ProtocolError(f"expected {expected}, got {json_type(value)}", name)


def _need_object(obj: object, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object, got {json_type(obj)}")
    return obj


def _get(obj: dict[str, Any], key: str, path: str = "") -> Any:
    try:
        return obj[key]
    except KeyError:
        raise ProtocolError("missing", _join(path, key)) from None


def _check_range(value: float, name: str, lo: float | None, hi: float | None) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        leaf = _leaf(name)
        if lo is not None and hi is not None and hi != MAX_INT:
            raise ProtocolError(f"{leaf} {value!r} is outside {lo}..{hi}", name)
        if lo is not None and value < lo:
            raise ProtocolError(f"{leaf} {value!r} is below the minimum {lo}", name)
        raise ProtocolError(f"{leaf} {_show(value)} is above the maximum {hi}", name)


def _check_int(value: object, name: str, lo: int | None = 0, hi: int | None = MAX_INT) -> int:
    # bool is an int subclass; True must never pass as seq 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong_type("integer", value, name)
    _check_range(value, name, lo, hi)
    return value


def _check_number(value: object, name: str, lo: float | None = 0, hi: float | None = None) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _wrong_type("number", value, name)
    # An int beyond a double (10**400 is valid JSON) is as infinite to a reader as 1e999, and
    # math.isfinite() would raise OverflowError on it instead of answering.
    if isinstance(value, int) and abs(value) > _MAX_DOUBLE:
        raise ProtocolError(f"{_leaf(name)} {_show(value)} is out of range", name)
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"{_leaf(name)} must be a finite number, got {value!r}", name)
    _check_range(value, name, lo, hi)
    return value


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type("boolean", value, name)
    return value


def _check_str(value: object, name: str, min_len: int = 1, max_len: int = 64, nullable: bool = False) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str):
        raise _wrong_type("string or null" if nullable else "string", value, name)
    n = len(value)
    if n < min_len or n > max_len:
        if n == 0:
            raise ProtocolError(f"{_leaf(name)} must not be empty", name)
        raise ProtocolError(f"{_leaf(name)} length {n} is outside {min_len}..{max_len}", name)
    if value.isprintable():  # fast path; isprintable is stricter than the rule below
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate can come out of a JSON "\ud800" escape; it would
        # crash the first encoder (database, log, display) that meets it.
        raise ProtocolError(f"{_leaf(name)} contains an unpaired surrogate", name) from None
    bad = forbidden_char(value)
    if bad is not None:
        raise ProtocolError(f"{_leaf(name)} contains a control character ({bad})", name)
    return value


def _check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise _wrong_type("string", value, name)
    if value not in choices:
        raise ProtocolError(f"{_leaf(name)} {_show(value)} is not one of {', '.join(choices)}", name)
    return value


def _check_pattern(value: object, name: str, pattern: Any, description: str) -> str:
    if not isinstance(value, str):
        raise _wrong_type("string", value, name)
    if pattern.match(value) is None:
        raise ProtocolError(f"{_leaf(name)} {_show(value)} is not {description}", name)
    return value

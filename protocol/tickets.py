"""The queue's wire values (issue 13): queue ids, ticket numbers, dates, and the
`request` a kiosk sends on `<prefix>/<device>/request` before it prints.

A request is answered on the kiosk's `cmd` topic by a `number` or `block`
command (protocol.messages); the ticket itself reaches the service later as a
`take` event (protocol.events), acked like every event.
"""

from __future__ import annotations

import re

from protocol.codec import _check_bool, _check_choice, _check_pattern, _get, _need_object, _show, decode
from protocol.errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time, to keep imports cheap
    from typing import Any

__all__ = [
    "MAX_NUMBER",
    "PRINTER_STATES",
    "QUEUE_ID_RE",
    "QUEUE_PREFIX_RE",
    "REQUEST_ID_RE",
    "REQUEST_OPS",
    "TAKE_SOURCES",
    "TICKET_RE",
    "check_date",
    "check_queue_id",
    "check_queue_prefix",
    "check_request_id",
    "check_ticket",
    "decode_request",
    "format_ticket",
    "make_request",
    "parse_ticket",
    "validate_request",
]

QUEUE_ID_RE = re.compile(r"\A[A-Za-z0-9_-]{1,16}\Z")
QUEUE_PREFIX_RE = re.compile(r"\A[A-Z]{1,2}\Z")
# The number is printed zero-padded to 3 digits, so every ticket has one spelling.
TICKET_RE = re.compile(r"\A([A-Z]{1,2})([0-9]{3})\Z")
REQUEST_ID_RE = re.compile(r"\A[0-9a-f]{8,32}\Z")
_DATE_RE = re.compile(r"\A([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")
MAX_NUMBER = 999
REQUEST_OPS = ("take", "block")
TAKE_SOURCES = ("service", "block")
PRINTER_STATES = ("ok", "paper_out", "missing", "error")

_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def check_queue_id(value: object, name: str = "queue") -> str:
    """Return `value` if it is a queue id (1-16 of A-Z a-z 0-9 _ -), else raise ProtocolError."""
    return _check_pattern(value, name, QUEUE_ID_RE, "a queue id (1-16 characters of A-Z a-z 0-9 _ -)")


def check_queue_prefix(value: object, name: str = "prefix") -> str:
    """Return `value` if it is a ticket prefix (one or two capital letters A-Z)."""
    return _check_pattern(value, name, QUEUE_PREFIX_RE, "one or two capital letters A-Z")


def check_request_id(value: object, name: str = "req") -> str:
    return _check_pattern(value, name, REQUEST_ID_RE, "8-32 lowercase hex digits")


def check_date(value: object, name: str = "date") -> str:
    """Return `value` if it is a calendar date YYYY-MM-DD (year 2000-9999)."""
    text = _check_pattern(value, name, _DATE_RE, "a date YYYY-MM-DD")
    year, month, day = (int(part) for part in _DATE_RE.match(text).groups())  # type: ignore[union-attr]
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = 0 if not 1 <= month <= 12 else _MONTH_DAYS[month - 1] - (month == 2 and not leap)
    if year < 2000 or not 1 <= day <= days:
        raise ProtocolError(f"date {_show(text)} is not a calendar date from 2000 on", name)
    return text


def check_ticket(value: object, name: str = "ticket") -> str:
    """Return `value` if it is a queue ticket: prefix and a number 001-999 ("A012")."""
    text = _check_pattern(value, name, TICKET_RE, "a ticket: 1-2 capital letters and 3 digits, e.g. A012")
    if text.endswith("000"):
        raise ProtocolError(f"ticket {_show(text)} has number 0; numbers run 001-{MAX_NUMBER}", name)
    return text


def format_ticket(prefix: str, number: int) -> str:
    """The printed ticket: format_ticket("A", 12) == "A012"."""
    if not 1 <= number <= MAX_NUMBER:
        raise ValueError(f"ticket number {number} is outside 1..{MAX_NUMBER}")
    return check_ticket(f"{check_queue_prefix(prefix)}{number:03d}")


def parse_ticket(ticket: str) -> tuple[str, int]:
    """(prefix, number) of a ticket: parse_ticket("A012") == ("A", 12); ProtocolError if it is not one."""
    prefix, digits = TICKET_RE.match(check_ticket(ticket)).groups()  # type: ignore[union-attr]
    return prefix, int(digits)


# --- request: kiosk -> service, QoS 1 ----------------------------------------


def validate_request(obj: object) -> dict[str, Any]:
    """Validate a request: {"req", "op": "take", "queue", "priority"} or {"req", "op": "block", "queue", "date"}."""
    r = _need_object(obj, "request")
    check_request_id(_get(r, "req"))
    op = _check_choice(_get(r, "op"), "op", REQUEST_OPS)
    check_queue_id(_get(r, "queue"))
    if op == "take":
        _check_bool(_get(r, "priority"), "priority")
    else:
        check_date(_get(r, "date"))
    return r


def make_request(op: str, req: str, queue: str, *, priority: bool = False, date: str | None = None) -> dict[str, Any]:
    """Build a validated request: make_request("take", req, "A", priority=True) or make_request("block", req, "A", date=d)."""
    r: dict[str, Any] = {"req": req, "op": op, "queue": queue}
    if op == "take":
        r["priority"] = priority
    else:
        r["date"] = date
    return validate_request(r)


def decode_request(payload: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """codec.decode + validate_request."""
    return validate_request(decode(payload))

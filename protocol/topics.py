"""MQTT topic names, and the QoS/retain rule for each kind of topic.

Every topic is `<prefix>/<device id>/<kind>`, so the service can subscribe to
one kind across all devices with a single-level wildcard and recover the
device id from the topic alone.
"""

from __future__ import annotations

import re

from protocol import DEFAULT_PREFIX
from protocol.errors import ProtocolError

__all__ = [
    "DEVICE_ID_RE",
    "KINDS",
    "QOS",
    "RETAINED",
    "Topics",
    "parse_topic",
    "subscription",
    "valid_device_id",
    "validate_prefix",
]

# A device id is also the MQTT client id and username, and one topic level:
# it must never contain '/', '+', '#' or whitespace, and stays short enough
# for every broker's client-id limit.
DEVICE_ID_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")

KINDS = ("event", "ack", "status", "telemetry", "cmd", "assignment", "request")

# Telemetry is a periodic sample: losing one is cheaper than queueing stale
# ones for an offline device. Everything else must arrive (a kiosk's request
# too, though it waits only seconds for the answer before using its block).
QOS = {"event": 1, "ack": 1, "status": 1, "telemetry": 0, "cmd": 1, "assignment": 1, "request": 1}

# Retained kinds describe current state, which a (re)connecting client needs
# immediately; the others are one-off messages that must not be replayed.
RETAINED = frozenset({"status", "assignment"})


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def valid_device_id(device_id: object) -> bool:
    """True if `device_id` is a string usable as a device id (see DEVICE_ID_RE)."""
    return isinstance(device_id, str) and DEVICE_ID_RE.match(device_id) is not None


def _check_device_id(device_id: object) -> str:
    if not valid_device_id(device_id):
        raise ProtocolError(
            f"{_show(device_id)} is not a device id (1-64 characters of"
            " A-Z a-z 0-9 _ . -, starting with a letter or digit)",
            "device",
        )
    return device_id  # type: ignore[return-value]


def validate_prefix(prefix: object) -> str:
    """Return `prefix` if it can head a topic, else raise ProtocolError."""
    if not isinstance(prefix, str) or not prefix:
        raise ProtocolError(f"topic prefix must be a non-empty string, got {_show(prefix)}", "prefix")
    if prefix.startswith("/") or prefix.endswith("/"):
        raise ProtocolError(f"topic prefix {_show(prefix)} must not start or end with '/'", "prefix")
    if "+" in prefix or "#" in prefix:
        raise ProtocolError(f"topic prefix {_show(prefix)} must not contain the wildcards + or #", "prefix")
    # An empty level is legal MQTT but is always a configuration typo here,
    # and would make device and service silently talk past each other.
    if "//" in prefix:
        raise ProtocolError(f"topic prefix {_show(prefix)} has an empty level", "prefix")
    if "\x00" in prefix:
        raise ProtocolError("topic prefix must not contain NUL", "prefix")
    return prefix


def _check_kind(kind: object) -> str:
    if kind not in KINDS:
        raise ProtocolError(f"unknown topic kind {_show(kind)}, expected one of {', '.join(KINDS)}", "kind")
    return kind  # type: ignore[return-value]


class Topics:
    """The seven topics of one device, e.g. `Topics("hcm-q1-c03").event`."""

    __slots__ = ("device_id", "prefix", "_base")

    def __init__(self, device_id: str, prefix: str = DEFAULT_PREFIX) -> None:
        self.device_id = _check_device_id(device_id)
        self.prefix = validate_prefix(prefix)
        self._base = f"{prefix}/{device_id}/"

    def topic(self, kind: str) -> str:
        """The topic of `kind` (one of KINDS) for this device."""
        return self._base + _check_kind(kind)

    @property
    def event(self) -> str:
        return self._base + "event"

    @property
    def ack(self) -> str:
        return self._base + "ack"

    @property
    def status(self) -> str:
        return self._base + "status"

    @property
    def telemetry(self) -> str:
        return self._base + "telemetry"

    @property
    def cmd(self) -> str:
        return self._base + "cmd"

    @property
    def assignment(self) -> str:
        return self._base + "assignment"

    @property
    def request(self) -> str:
        return self._base + "request"

    def __repr__(self) -> str:
        return f"Topics({self.device_id!r}, prefix={self.prefix!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Topics):
            return NotImplemented
        return self._base == other._base

    def __hash__(self) -> int:
        return hash(self._base)


def parse_topic(topic: str, prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """Split a concrete topic into (device_id, kind); ProtocolError if it is not one of ours."""
    validate_prefix(prefix)
    if not isinstance(topic, str):
        raise ProtocolError(f"topic must be a string, got {_show(topic)}", "topic")
    head = prefix + "/"
    if not topic.startswith(head):
        raise ProtocolError(f"topic {_show(topic)} is not under {prefix!r}", "topic")
    levels = topic[len(head):].split("/")
    if len(levels) != 2:
        raise ProtocolError(f"topic {_show(topic)} is not {prefix}/<device>/<kind>", "topic")
    device_id, kind = levels
    return _check_device_id(device_id), _check_kind(kind)


def subscription(kind: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The service-side filter for `kind` from every device: `<prefix>/+/<kind>`."""
    return f"{validate_prefix(prefix)}/+/{_check_kind(kind)}"

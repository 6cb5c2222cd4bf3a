"""The device's configuration: one declarative schema, everything else derived from it.

`SCHEMA` lists every key with its type, default (or REQUIRED), constraints and a
description. Loading, validation, docs/device-config.md and the example config
(`hailong device example-config`) are all generated from it, so they cannot drift.

Validation collects every problem before failing: an installer at a counter should
fix the file once, not once per mistake. Unknown keys are errors with a suggestion,
because a typo'd key would otherwise silently fall back to its default.

Run `python -m device.config --write-docs` after changing the schema.
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import sys
import textwrap
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.errors import ConfigError

__all__ = [
    "REQUIRED", "SCHEMA", "SECTIONS", "FILE_KEY", "DOCS_PATH", "DEFAULT_LABELS", "Key",
    "DeviceConfig", "DeviceSection", "MqttSection", "LedgerSection", "RatingSection",
    "StaffSection", "PinsSection", "BuzzerSection", "DisplaySection", "BadgeSection",
    "ClockSection", "TelemetrySection", "Officer",
    "load_config", "config_from_dict", "example_config", "config_reference_markdown",
]

FILE_KEY = "<file>"  # the problem key for faults of the file itself (unreadable, bad TOML)
DOCS_PATH = Path(__file__).resolve().parent.parent / "docs" / "device-config.md"


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

DEFAULT_LABELS: dict[int, tuple[str, ...]] = {
    3: ("Không hài lòng", "Hài lòng", "Rất hài lòng"),
    4: ("Không hài lòng", "Bình thường", "Hài lòng", "Rất hài lòng"),
    5: ("Rất không hài lòng", "Không hài lòng", "Bình thường", "Hài lòng", "Rất hài lòng"),
}

# Pins the kernel claims for the display's SPI bus (SCLK, MOSI, MISO, CE0, and CE1 when
# the display sits on it) and for the badge reader's UART; gpiozero cannot share them.
_SPI_PINS = {0: (8, 9, 10, 11), 1: (18, 19, 20, 21)}
_SPI_CE1 = {0: 7, 1: 17}
_UART_PINS = (14, 15)

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")


@dataclass(frozen=True)
class Key:
    """One configuration key: what it is for, its type, default and constraints."""

    path: str                     # dotted, e.g. "mqtt.port"; roster keys are "officers.<name>"
    kind: str                     # str | int | float | bool | path | choice | list[int] | list[str]
    default: Any                  # REQUIRED, None (unset, or derived from other keys) or a value
    doc: str
    lo: int | float | None = None  # numbers: value bounds; strings: length; lists: each item
    hi: int | float | None = None
    lo_open: bool = False         # for "> 0" timeouts, where 0 would mean "never wait"
    choices: Mapping[Any, Any] | None = None  # accepted spelling -> normalised value
    check: Callable[[Any], Any] | None = None  # extra rule; `rule_text` must describe it
    rule_text: str | None = None
    default_text: str | None = None  # documents a default derived from other keys
    example: Any = None           # shown in the example config when there is no default
    recommended: bool = False     # optional, but the example config sets it live
    must_exist: bool = False      # paths that must name an existing file

    @property
    def section(self) -> str:
        return self.path.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.path.split(".", 1)[1]

    @property
    def rule(self) -> str:
        """What a valid value looks like, phrased to follow "must be"."""
        if self.rule_text:
            return self.rule_text
        if self.kind == "bool":
            return "true or false"
        if self.kind == "path":
            return "a non-empty path"
        if self.kind == "choice":
            return "one of " + ", ".join(_toml(v) for v in dict.fromkeys(self.choices.values()))
        item = self.kind.removeprefix("list[").removesuffix("]")
        noun = {"int": "integer", "float": "number", "str": "string"}[item]
        if item == "str":
            if self.lo == 1 and self.hi is None:
                noun, bounds = "non-empty string", ""
            else:
                bounds = f"of {self.lo}..{self.hi} characters" if self.hi is not None else ""
        elif self.lo is not None and self.hi is not None:
            bounds = f"{self.lo}..{self.hi}"
        elif self.lo is not None:
            bounds = f"{'>' if self.lo_open else '>='} {self.lo}"
        else:
            bounds = ""
        if self.kind.startswith("list["):
            return f"a list of {noun}s {bounds}".strip()
        article = "an" if noun[0] in "aeiou" else "a"
        return f"{article} {noun} {bounds}".strip()


def _str(path, default, doc, lo=1, hi=64, **kw) -> Key:
    return Key(path, "str", default, doc, lo=lo, hi=hi, **kw)


def _int(path, default, doc, lo=None, hi=None, **kw) -> Key:
    return Key(path, "int", default, doc, lo=lo, hi=hi, **kw)


def _float(path, default, doc, lo=0, lo_open=True, **kw) -> Key:
    return Key(path, "float", default, doc, lo=lo, lo_open=lo_open, **kw)


def _pin(path, default, doc) -> Key:
    return Key(path, "int", default, doc, lo=0, hi=27)


SECTIONS: dict[str, str] = {
    "device": "Who this device is and where it keeps its data.",
    "mqtt": "Connection to the central service's MQTT broker.",
    "ledger": "Delivery of recorded events to the service.",
    "rating": "The citizen's rating buttons and the optional follow-up question.",
    "staff": "The officer's NEXT and RECALL buttons and ticket numbers.",
    "pins": "GPIO wiring as BCM numbers (0..27); no pin may be used twice.",
    "buzzer": "Optional buzzer for audible feedback.",
    "display": "The ticket-number display (MAX7219 on SPI).",
    "badge": "Optional serial RFID reader for officer badges (uses UART pins 14 and 15).",
    "clock": "Whether the local clock can be trusted for event timestamps.",
    "telemetry": "Periodic health reports.",
    "officers": "Optional roster of officers who may sign in here; one [[officers]] table each.",
}
_ARRAY_SECTIONS = {"officers"}  # arrays of tables rather than single tables

SCHEMA: list[Key] = [
    _str("device.id", REQUIRED,
         "Unique identifier of this device; also its MQTT username and client id.",
         check=_ID_RE.fullmatch, example="hl-hp-kt-01-c03",
         rule_text="1..64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit"),
    _str("device.site", REQUIRED, "The one-stop administrative centre this counter belongs to.",
         example="kien-thuy"),
    _str("device.counter", REQUIRED, "The counter (service desk) within the site, as known to citizens.",
         example="3"),
    Key("device.data_dir", "path", REQUIRED,
        "Directory for persistent state, including the vote ledger (ledger.db); must survive reboots.",
        example="/var/lib/hailong"),

    _str("mqtt.host", REQUIRED, "Host name or IP address of the MQTT broker.", hi=None,
         example="mqtt.example.vn"),
    _int("mqtt.port", 1883, "TCP port of the MQTT broker (usually 1883, or 8883 with TLS).",
         lo=1, hi=65535),
    _str("mqtt.username", None, "MQTT username; defaults to device.id.", hi=None,
         default_text="device.id", example="hl-hp-kt-01-c03"),
    _str("mqtt.password", None,
         "MQTT password written inline; prefer password_file so the secret stays out of this file.",
         hi=None, example="change-me"),
    Key("mqtt.password_file", "path", None,
        "File holding the MQTT password (trailing newline ignored), read at load time; "
        "set at most one of password and password_file, neither means anonymous.",
        example="/etc/hailong/mqtt-password", recommended=True),
    Key("mqtt.protocol", "choice", "5",
        'MQTT protocol version: "5" or "3.1.1" (5, "v5", "311" and "v311" are accepted too).',
        choices={"5": "5", "v5": "5", 5: "5", "3.1.1": "3.1.1", "311": "3.1.1", "v311": "3.1.1"}),
    _str("mqtt.prefix", "hailong/v1", "Topic prefix shared by all hailong topics.", hi=None,
         check=lambda v: v.strip("/") == v and not set("+#") & set(v),
         rule_text='a non-empty topic prefix without "+", "#" or a leading/trailing "/"'),
    _int("mqtt.keepalive_s", 30, "Seconds between keepalive pings; bounds how fast a dead link is noticed.",
         lo=5, hi=600),
    _int("mqtt.session_expiry_s", 604800,
         "Seconds the broker keeps this device's session while it is offline (MQTT 5).",
         lo=0, hi=2**32 - 1),  # MQTT 5 encodes it in four bytes
    Key("mqtt.tls", "bool", False, "Connect to the broker with TLS."),
    Key("mqtt.ca_file", "path", None,
        "CA certificates that verify the broker; unset means the system trust store.",
        must_exist=True, example="/etc/hailong/ca.crt"),
    Key("mqtt.cert_file", "path", None, "Client certificate for mutual TLS; set together with key_file.",
        must_exist=True, example="/etc/hailong/device.crt"),
    Key("mqtt.key_file", "path", None, "Private key of cert_file.",
        must_exist=True, example="/etc/hailong/device.key"),
    _float("mqtt.backoff_min_s", 1.0, "First reconnect delay after losing the broker; doubles on each failure."),
    _float("mqtt.backoff_max_s", 5.0,
           "Longest reconnect delay; must be at least backoff_min_s. Each wait is jittered between half "
           "and all of the step, so a centre's counters do not reconnect in the same second; keep it "
           "short so a backlog starts draining soon after the broker returns."),
    _float("mqtt.connect_timeout_s", 10.0, "Seconds to wait for the broker to accept a connection."),

    _int("ledger.in_flight", 100, "How many unacknowledged events may be in flight to the service at once.",
         lo=1, hi=1000),
    _float("ledger.ack_timeout_s", 15.0, "Unacknowledged events are sent again after this many seconds."),

    _int("rating.scale", 4, "Number of rating buttons in use.", lo=3, hi=5),
    Key("rating.labels", "list[str]", None, "Name of each rating, worst first; one per button.",
        lo=1, default_text="depends on rating.scale (see below)", example=list(DEFAULT_LABELS[4])),
    _float("rating.repeat_gap_s", 15.0,
           "Presses this soon after an accepted rating count as the same citizen, not a new vote.",
           lo_open=False),
    _float("rating.grace_s", 10.0, "After NEXT, the previous ticket can still be rated for this long.",
           lo_open=False),
    _float("rating.feedback_s", 1.5, "How long the thank-you feedback is shown after a rating."),
    Key("rating.reasons", "list[str]", [],
        "Follow-up reasons asked after a low rating, mapped in order to the rating buttons "
        '(e.g. ["Chờ lâu", "Thái độ", "Hướng dẫn chưa rõ", "Khác"]); empty means no follow-up question.',
        lo=1, hi=100),
    _int("rating.ask_reason_max_score", 1,
         "Ratings at or below this score ask for a reason when reasons are configured (1..scale-1).",
         lo=1),
    _float("rating.reason_window_s", 6.0, "Seconds to wait for a reason before recording the rating without one."),

    _float("staff.hold_close_s", 3.0, "Holding NEXT this many seconds closes the counter."),
    _float("staff.ticket_timeout_s", 2.0,
           "Seconds to wait for the service's ticket number before showing a local fallback number."),
    _int("staff.fallback_start", 1, "First local fallback ticket number.", lo=1),

    Key("pins.rating_buttons", "list[int]", [5, 6, 13, 19, 26],
        "Rating button pins, worst to best; at least scale entries, only the first scale are used.",
        lo=0, hi=27),
    Key("pins.rating_leds", "list[int]", [12, 16, 20, 21, 25],
        "Pins of the LEDs beside the rating buttons, in the same order; empty means no LEDs.",
        lo=0, hi=27),
    _pin("pins.next_button", 23, "Pin of the officer's NEXT button."),
    _pin("pins.recall_button", 24, "Pin of the officer's RECALL button (call the current ticket again)."),
    Key("pins.pull_up", "bool", True, "Buttons connect the pin to ground; false means to 3.3 V."),
    _float("pins.bounce_s", 0.05, "Button debounce time in seconds.", lo_open=False),

    Key("buzzer.enabled", "bool", False, "Beep on presses and ratings."),
    _pin("buzzer.pin", 18, "Pin driving the buzzer."),

    Key("display.kind", "choice", "sevenseg",
        'Display type: "sevenseg" (7-segment digits), "matrix" (8x8 LED modules) or "none".',
        choices={k: k for k in ("sevenseg", "matrix", "none")}),
    Key("display.digits", "choice", 4, "Number of 7-segment digits (sevenseg only).", choices={4: 4, 8: 8}),
    _int("display.cascaded", 4, "Number of chained 8x8 modules (matrix only).", lo=1, hi=16),
    _int("display.spi_port", 0, "SPI bus of the display (0 uses pins 8-11).", lo=0, hi=1),
    _int("display.spi_device", 0, "SPI chip select of the display (0 = CE0, 1 = CE1).", lo=0, hi=1),
    _int("display.brightness", 128, "Display brightness, 0 (dimmest) to 255.", lo=0, hi=255),
    _int("display.rotate", 0, "Display rotation in quarter turns.", lo=0, hi=3),

    Key("badge.enabled", "bool", False, "Read officer badges from a serial RFID reader."),
    _str("badge.port", "/dev/serial0", "Serial port of the badge reader.", hi=None),
    _int("badge.baud", 9600, "Serial speed of the badge reader in baud.", lo=1),

    Key("clock.trust", "choice", "auto",
        'Trust the local clock for timestamps: "auto" asks the kernel whether NTP has synchronised it, '
        '"always" or "never" override that.',
        choices={k: k for k in ("auto", "always", "never")}),

    _float("telemetry.interval_s", 60.0, "Seconds between health reports.", lo=1, lo_open=False),

    _str("officers.id", REQUIRED, "Officer identifier, unique in the roster.", example="cb-0012"),
    _str("officers.name", "", "Officer's full name, for reports.", lo=None, hi=None,
         example="Nguyễn Văn An"),
    _str("officers.code", REQUIRED, "Short code shown on the display while the officer is signed in.",
         hi=8, example="AN"),
    _str("officers.badge", None, "UID of the officer's badge in hex (any case); unique in the roster.",
         lo=2, hi=32, check=_HEX_RE.fullmatch, rule_text="2..32 hex digits", example="04A1B2C3"),
]

# Rules spanning several keys, for the docs; enforced by _check_across and _read_officers.
_CROSS_RULES = [
    "`mqtt.password` and `mqtt.password_file` cannot both be set; the file must be readable and non-empty.",
    "`mqtt.cert_file` and `mqtt.key_file` are set together or not at all.",
    "`mqtt.backoff_max_s` must be at least `mqtt.backoff_min_s`.",
    "`rating.labels` must have exactly `rating.scale` entries; "
    "`rating.reasons` at most `rating.scale`.",
    "`rating.ask_reason_max_score` must be at most `rating.scale` - 1.",
    "`pins.rating_buttons` needs at least `rating.scale` pins; "
    "`pins.rating_leds` is empty or has at least `rating.scale`.",
    "No pin is used twice among the used rating buttons and LEDs, `pins.next_button`, "
    "`pins.recall_button` and `buzzer.pin` (when the buzzer is enabled).",
    "Those pins must avoid the display's SPI bus unless `display.kind` is \"none\" "
    "(SPI0: 8, 9, 10, 11, plus 7 for `spi_device` 1; SPI1: 18, 19, 20, 21, plus 17), "
    "and the UART pins 14 and 15 when `badge.enabled`.",
    "Officer ids and badges are unique across the roster.",
]


def _keys(section: str) -> list[Key]:
    return [k for k in SCHEMA if k.section == section]


# --- the parsed configuration -------------------------------------------------------------

@dataclass(frozen=True)
class DeviceSection:
    id: str
    site: str
    counter: str
    data_dir: Path


@dataclass(frozen=True)
class MqttSection:
    host: str
    port: int
    username: str
    password: str | None = field(repr=False)  # resolved from password_file; never logged
    password_file: Path | None
    protocol: str
    prefix: str
    keepalive_s: int
    session_expiry_s: int
    tls: bool
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    backoff_min_s: float
    backoff_max_s: float
    connect_timeout_s: float


@dataclass(frozen=True)
class LedgerSection:
    in_flight: int
    ack_timeout_s: float


@dataclass(frozen=True)
class RatingSection:
    scale: int
    labels: tuple[str, ...]
    repeat_gap_s: float
    grace_s: float
    feedback_s: float
    reasons: tuple[str, ...]
    ask_reason_max_score: int
    reason_window_s: float


@dataclass(frozen=True)
class StaffSection:
    hold_close_s: float
    ticket_timeout_s: float
    fallback_start: int


@dataclass(frozen=True)
class PinsSection:
    rating_buttons: tuple[int, ...]
    rating_leds: tuple[int, ...]
    next_button: int
    recall_button: int
    pull_up: bool
    bounce_s: float


@dataclass(frozen=True)
class BuzzerSection:
    enabled: bool
    pin: int


@dataclass(frozen=True)
class DisplaySection:
    kind: str
    digits: int
    cascaded: int
    spi_port: int
    spi_device: int
    brightness: int
    rotate: int


@dataclass(frozen=True)
class BadgeSection:
    enabled: bool
    port: str
    baud: int


@dataclass(frozen=True)
class ClockSection:
    trust: str


@dataclass(frozen=True)
class TelemetrySection:
    interval_s: float


@dataclass(frozen=True)
class Officer:
    id: str
    name: str
    code: str
    badge: str | None  # upper-case hex


_SECTION_TYPES: dict[str, type] = {
    "device": DeviceSection, "mqtt": MqttSection, "ledger": LedgerSection,
    "rating": RatingSection, "staff": StaffSection, "pins": PinsSection,
    "buzzer": BuzzerSection, "display": DisplaySection, "badge": BadgeSection,
    "clock": ClockSection, "telemetry": TelemetrySection, "officers": Officer,
}


@dataclass(frozen=True)
class DeviceConfig:
    device: DeviceSection
    mqtt: MqttSection
    ledger: LedgerSection
    rating: RatingSection
    staff: StaffSection
    pins: PinsSection
    buzzer: BuzzerSection
    display: DisplaySection
    badge: BadgeSection
    clock: ClockSection
    telemetry: TelemetrySection
    officers: tuple[Officer, ...] = ()
    source: Path | None = None

    @property
    def display_width(self) -> int:
        """Characters the display can show (a proportional matrix font is ~6 columns wide)."""
        if self.display.kind == "sevenseg":
            return self.display.digits
        if self.display.kind == "matrix":
            return self.display.cascaded * 8 // 6
        return 4

    @property
    def ledger_path(self) -> Path:
        return self.device.data_dir / "ledger.db"

    def officer_for_badge(self, uid: str) -> Officer | None:
        wanted = uid.strip().upper()
        return next((o for o in self.officers if o.badge == wanted), None)


# --- loading and validation ----------------------------------------------------------------

class _Invalid(Exception):
    pass


def load_config(path: str | Path) -> DeviceConfig:
    """Read and validate a TOML config file; raise ConfigError listing every problem."""
    path = Path(path).absolute()
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError([(FILE_KEY, f"cannot read: {e.strerror or e}")], path) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([(FILE_KEY, f"invalid TOML: {e}")], path) from None
    return config_from_dict(data, base_dir=path.parent, source=path)


def config_from_dict(data: dict, base_dir: Path | None = None, *,
                     source: Path | None = None) -> DeviceConfig:
    """Validate parsed TOML. Relative paths are resolved against base_dir (kept as is without it)."""
    base = Path(base_dir) if base_dir is not None else None
    if not isinstance(data, dict):
        raise ConfigError([(FILE_KEY, f"must be a table of sections, got {_got(data)}")], source)
    problems: list[tuple[str, str]] = []
    for name in data:
        if name not in SECTIONS:
            problems.append((name, _unknown(name, list(SECTIONS), "")))
    values: dict[str, Any] = {}
    for section in SECTIONS:
        if section in _ARRAY_SECTIONS:
            continue
        table = data.get(section, {})
        if not isinstance(table, dict):
            problems.append((section, f"must be a table ([{section}]), got {_got(table)}"))
            continue
        values.update(_read_table(table, section, section, base, problems))
    roster = _read_officers(data.get("officers", []), base, problems)
    _fill_derived_defaults(values)
    _check_across(values, problems)
    _read_password_file(values, problems)
    if problems:
        raise ConfigError(problems, source)
    sections = {name: cls(**{k.name: values[k.path] for k in _keys(name)})
                for name, cls in _SECTION_TYPES.items() if name not in _ARRAY_SECTIONS}
    officers = tuple(Officer(**{k.name: o[k.path] for k in _keys("officers")}) for o in roster)
    return DeviceConfig(**sections, officers=officers, source=source)


def _read_table(table: dict, section: str, label: str, base: Path | None,
                problems: list[tuple[str, str]]) -> dict[str, Any]:
    """Check one table against its section's keys; return {key.path: value} for the valid ones."""
    keys = _keys(section)
    names = [k.name for k in keys]
    for name in table:
        if name not in names:
            problems.append((f"{label}.{name}", _unknown(name, names, f"{label}.")))
    values: dict[str, Any] = {}
    for key in keys:
        where = f"{label}.{key.name}"
        if key.name not in table:
            if key.default is REQUIRED:
                problems.append((where, "required key is missing"))
            else:
                # Copy list defaults so no caller can mutate the schema.
                values[key.path] = tuple(key.default) if isinstance(key.default, list) else key.default
            continue
        raw = table[key.name]
        try:
            value = _parse(key, raw, base)
        except _Invalid:
            problems.append((where, f"must be {key.rule}, got {_got(raw)}"))
            continue
        if key.must_exist and not value.is_file():
            problems.append((where, f"file not found: {value}"))
        values[key.path] = value
    return values


def _parse(key: Key, raw: Any, base: Path | None) -> Any:
    if key.kind == "choice":
        spelling = raw.lower() if isinstance(raw, str) else raw
        # bool is excluded because True == 1 would otherwise match an integer choice.
        if isinstance(spelling, bool) or not isinstance(spelling, (str, int)) or spelling not in key.choices:
            raise _Invalid
        return key.choices[spelling]
    if key.kind.startswith("list["):
        item_kind = key.kind[5:-1]
        if not isinstance(raw, list) or not all(_valid(key, item_kind, item) for item in raw):
            raise _Invalid
        return tuple(raw)
    if not _valid(key, key.kind, raw):
        raise _Invalid
    if key.kind == "float":
        return float(raw)
    if key.kind == "path":
        path = Path(raw)
        return base / path if base is not None and not path.is_absolute() else path
    return raw


def _valid(key: Key, kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("int", "float"):
        # bool is an int subclass, but `port = true` is a mistake, not 1.
        types = int if kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, types):
            return False
        if isinstance(value, float) and not math.isfinite(value):  # TOML allows inf and nan
            return False
        size = value
    elif isinstance(value, str):
        size = len(value)
        if kind == "path" and not value:
            return False
    else:
        return False
    if key.lo is not None and (size <= key.lo if key.lo_open else size < key.lo):
        return False
    if key.hi is not None and size > key.hi:
        return False
    return key.check is None or bool(key.check(value))


def _unknown(name: str, candidates: list[str], prefix: str) -> str:
    guess = difflib.get_close_matches(name, candidates, n=1)
    if guess:
        return f"unknown key (did you mean {prefix}{guess[0]}?)"
    # Not a typo but maybe the right key in the wrong table, e.g. `port` under [device].
    elsewhere = [k.path for k in SCHEMA if k.name == name and k.section not in _ARRAY_SECTIONS]
    if elsewhere:
        return f"unknown key (did you mean {elsewhere[0]}?)"
    return "unknown key"


def _read_officers(raw: Any, base: Path | None, problems: list[tuple[str, str]]) -> list[dict]:
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        problems.append(("officers", f"must be an array of tables ([[officers]]), got {_got(raw)}"))
        return []
    roster = []
    first_with: dict[tuple[str, str], str] = {}  # (field, value) -> label of the first officer
    for i, table in enumerate(raw):
        label = f"officers[{i}]"
        officer = _read_table(table, "officers", label, base, problems)
        if officer.get("officers.badge") is not None:
            officer["officers.badge"] = officer["officers.badge"].upper()
        for name in ("id", "badge"):
            value = officer.get(f"officers.{name}")
            if value is None:
                continue
            if (name, value) in first_with:
                problems.append((f"{label}.{name}",
                                 f"{value!r} is already used by {first_with[name, value]}.{name}"))
            else:
                first_with[name, value] = label
        roster.append(officer)
    return roster


def _fill_derived_defaults(v: dict[str, Any]) -> None:
    if "mqtt.username" in v and v["mqtt.username"] is None and "device.id" in v:
        v["mqtt.username"] = v["device.id"]
    if "rating.labels" in v and v["rating.labels"] is None and "rating.scale" in v:
        v["rating.labels"] = DEFAULT_LABELS[v["rating.scale"]]


def _read_password_file(v: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    # Read now rather than at connect time, so a missing secret shows up with the other
    # config problems at start-up instead of as a broker refusal much later.
    password_file = v.get("mqtt.password_file")
    if password_file is None:
        return
    try:
        secret = password_file.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeError) as e:
        problems.append(("mqtt.password_file", f"cannot read {password_file}: {getattr(e, 'strerror', None) or e}"))
        return
    if not secret:
        problems.append(("mqtt.password_file", f"{password_file} is empty"))
    elif v.get("mqtt.password") is None:
        v["mqtt.password"] = secret


def _check_across(v: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    """Rules that involve several keys; each runs only if its keys are individually valid."""
    def have(*paths: str) -> bool:
        return all(p in v for p in paths)

    add = problems.append
    if v.get("mqtt.password_file") is not None and v.get("mqtt.password") is not None:
        add(("mqtt.password_file", "set either mqtt.password or mqtt.password_file, not both"))
    if have("mqtt.cert_file", "mqtt.key_file") and (v["mqtt.cert_file"] is None) != (v["mqtt.key_file"] is None):
        missing, given = ("key_file", "cert_file") if v["mqtt.key_file"] is None else ("cert_file", "key_file")
        add((f"mqtt.{missing}", f"must be set together with mqtt.{given}"))
    if have("mqtt.backoff_min_s", "mqtt.backoff_max_s") and v["mqtt.backoff_max_s"] < v["mqtt.backoff_min_s"]:
        add(("mqtt.backoff_max_s",
             f"must be >= mqtt.backoff_min_s ({v['mqtt.backoff_min_s']}), got {v['mqtt.backoff_max_s']}"))
    if have("rating.scale"):
        scale = v["rating.scale"]
        of_scale = f"(rating.scale = {scale})"
        if have("rating.labels") and len(v["rating.labels"]) != scale:
            add(("rating.labels", f"must have exactly {scale} entries {of_scale}, got {len(v['rating.labels'])}"))
        if have("rating.reasons") and len(v["rating.reasons"]) > scale:
            add(("rating.reasons", f"must have at most {scale} entries {of_scale}, got {len(v['rating.reasons'])}"))
        if have("rating.ask_reason_max_score") and v["rating.ask_reason_max_score"] > scale - 1:
            add(("rating.ask_reason_max_score",
                 f"must be an integer 1..{scale - 1} {of_scale}, got {v['rating.ask_reason_max_score']}"))
        if have("pins.rating_buttons") and len(v["pins.rating_buttons"]) < scale:
            add(("pins.rating_buttons",
                 f"must list at least {scale} pins {of_scale}, got {len(v['pins.rating_buttons'])}"))
        if have("pins.rating_leds") and 0 < len(v["pins.rating_leds"]) < scale:
            add(("pins.rating_leds",
                 f"must be empty or list at least {scale} pins {of_scale}, got {len(v['pins.rating_leds'])}"))
    _check_pins(v, problems)


def _check_pins(v: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    owner: dict[int, str] = {}  # pin -> who already uses it, as the message should name it
    if v.get("display.kind", "none") != "none" and "display.spi_port" in v:
        port = v["display.spi_port"]
        spi = list(_SPI_PINS[port]) + ([_SPI_CE1[port]] if v.get("display.spi_device") == 1 else [])
        for pin in spi:
            owner[pin] = (f'the display (display.kind = "{v["display.kind"]}", '
                          f'SPI{port}: pins {", ".join(map(str, sorted(spi)))})')
    if v.get("badge.enabled"):
        for pin in _UART_PINS:
            owner[pin] = "the badge reader (badge.enabled = true, UART: pins 14, 15)"
    # Only the pins actually driven count: extra list entries beyond the scale are unused.
    scale = v.get("rating.scale", 5)
    uses = [(f"{key}[{i}]", pin)
            for key in ("pins.rating_buttons", "pins.rating_leds")
            for i, pin in enumerate(v.get(key, ())[:scale])]
    uses += [(key, v[key]) for key in ("pins.next_button", "pins.recall_button") if key in v]
    if v.get("buzzer.enabled") and "buzzer.pin" in v:  # a disabled buzzer claims no pin
        uses.append(("buzzer.pin", v["buzzer.pin"]))
    for key, pin in uses:
        if pin in owner:
            problems.append((key, f"pin {pin} is also used by {owner[pin]}"))
        else:
            owner[pin] = key


def _got(value: Any) -> str:
    """Show a bad value the way it would look in the TOML file where that is clearer."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def _toml(value: Any) -> str:
    """A TOML literal for schema values (strings, numbers, booleans and lists of them)."""
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    # JSON strings, numbers and booleans are valid TOML; keep Vietnamese readable.
    return json.dumps(value, ensure_ascii=False)


# --- generated text ------------------------------------------------------------------------

def example_config() -> str:
    """A complete, commented config: required keys with example values, the rest at defaults."""
    out = ["# hailong device configuration.",
           "# Generated from device/config.py (`hailong device example-config`); every key is shown.",
           "# Keys marked Required must be set; the others show their defaults, and commented-out",
           "# keys are unset. Relative paths are relative to this file. Reference: docs/device-config.md"]
    for section, about in SECTIONS.items():
        roster = section in _ARRAY_SECTIONS
        out += ["", *_comment(about), f"# [[{section}]]" if roster else f"[{section}]"]
        for key in _keys(section):
            if not roster:
                out.append("")
            out += _comment(key.doc + (" Required." if key.default is REQUIRED else ""))
            if key.default is REQUIRED or key.recommended or (roster and key.example is not None):
                line = f"{key.name} = {_toml(key.example)}"
            elif key.default is None:
                line = f"# {key.name} = {_toml(key.example)}"
            else:
                line = f"{key.name} = {_toml(key.default)}"
            out.append(f"# {line}" if roster and not line.startswith("#") else line)
    return "\n".join(out) + "\n"


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=88, initial_indent="# ", subsequent_indent="# ",
                         break_on_hyphens=False)


def config_reference_markdown() -> str:
    """The contents of docs/device-config.md."""
    out = ["# Device configuration reference", "",
           "<!-- Generated from device/config.py by `python -m device.config --write-docs`; do not edit. -->",
           "",
           "Each counter's Raspberry Pi reads one TOML file. `hailong device example-config` prints a "
           "complete commented example. Validation reports every problem at once, each with its dotted "
           "key; unknown keys are errors (with a suggestion) so a typo cannot silently fall back to a "
           "default. Relative paths are resolved against the config file's directory."]
    for section, about in SECTIONS.items():
        title = f"[[{section}]]" if section in _ARRAY_SECTIONS else f"[{section}]"
        out += ["", f"## `{title}`", "", about, "",
                "| Key | Type | Default | Description |", "|---|---|---|---|"]
        for key in _keys(section):
            name = f"{section}[].{key.name}" if section in _ARRAY_SECTIONS else key.path
            kind = re.sub(r"^an? ", "", key.rule)
            if key.default is REQUIRED:
                default = "**required**"
            elif key.default_text:
                default = key.default_text
            elif key.default is None:
                default = "unset"
            else:
                default = f"`{_toml(key.default)}`"
            out.append("| " + " | ".join(cell.replace("|", "\\|")
                                         for cell in (f"`{name}`", kind, default, key.doc)) + " |")
        if section == "rating":
            out += ["", "Default `rating.labels` by `rating.scale`:", ""]
            out += [f"- {scale}: `{_toml(labels)}`" for scale, labels in DEFAULT_LABELS.items()]
    out += ["", "## Rules across keys", ""] + [f"- {rule}" for rule in _CROSS_RULES]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.config", description="Device configuration tools.")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write-docs", action="store_true", help=f"regenerate {DOCS_PATH.name}")
    action.add_argument("--example", action="store_true", help="print the example config")
    action.add_argument("--check", metavar="FILE", help="validate a config file")
    args = parser.parse_args(argv)
    if args.write_docs:
        DOCS_PATH.write_text(config_reference_markdown(), encoding="utf-8")
        print(f"wrote {DOCS_PATH}")
    elif args.example:
        sys.stdout.write(example_config())
    else:
        try:
            load_config(args.check)
        except ConfigError as e:
            print(e, file=sys.stderr)
            return 1
        print(f"{args.check}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

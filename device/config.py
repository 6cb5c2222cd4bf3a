"""The device's configuration: one declarative schema, everything else derived from it.

`SCHEMA` lists every key with its type, default (or REQUIRED), constraints and a
description. Loading, validation, docs/device-config.md and the example config
(`hailong device example-config`) are all generated from it by the shared machinery in
hailong/configschema.py, so they cannot drift. Validation collects every problem before
failing, and unknown keys are errors with a suggestion.

This module adds what is the device's own: its keys and dataclasses, the rules that
span several keys (pins above all) and the officer roster.

Run `python -m device.config --write-docs` after changing the schema.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.errors import ConfigError
from hailong.configschema import (
    FILE_KEY, MQTT_PROTOCOLS, REQUIRED, TOPIC_PREFIX_RULE, Key, Problems, Schema, as_written,
    config_tool, is_topic_prefix, not_both, read_secret_file, together, toml_literal,
)

__all__ = [
    "REQUIRED", "SCHEMA", "SECTIONS", "FILE_KEY", "DOCS_PATH", "DEFAULT_LABELS", "Key",
    "DeviceConfig", "DeviceSection", "MqttSection", "LedgerSection", "RatingSection",
    "StaffSection", "PinsSection", "BuzzerSection", "DisplaySection", "BadgeSection",
    "ClockSection", "TelemetrySection", "Officer",
    "load_config", "config_from_dict", "example_config", "config_reference_markdown",
]

DOCS_PATH = Path(__file__).resolve().parent.parent / "docs" / "device-config.md"


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
        choices=MQTT_PROTOCOLS),
    _str("mqtt.prefix", "hailong/v1", "Topic prefix shared by all hailong topics.", hi=None,
         check=is_topic_prefix, rule_text=TOPIC_PREFIX_RULE),
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


_SCHEMA = Schema(SECTIONS, SCHEMA, ConfigError, arrays=frozenset(_ARRAY_SECTIONS))


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

def load_config(path: str | Path) -> DeviceConfig:
    """Read and validate a TOML config file; raise ConfigError listing every problem."""
    path = Path(path).absolute()
    return config_from_dict(_SCHEMA.load_toml(path), base_dir=path.parent, source=path)


def config_from_dict(data: dict, base_dir: Path | None = None, *,
                     source: Path | None = None) -> DeviceConfig:
    """Validate parsed TOML. Relative paths are resolved against base_dir (kept as is without it)."""
    base = Path(base_dir) if base_dir is not None else None
    values, problems = _SCHEMA.read(data, base, source)
    roster = _read_officers(data.get("officers", []), base, problems)
    _fill_derived_defaults(values)
    _check_across(values, problems)
    read_secret_file(values, "mqtt.password_file", "mqtt.password", problems)
    if problems:
        raise ConfigError(problems, source)
    sections = {name: _SCHEMA.make(cls, name, values)
                for name, cls in _SECTION_TYPES.items() if name not in _ARRAY_SECTIONS}
    officers = tuple(_SCHEMA.make(Officer, "officers", o) for o in roster)
    return DeviceConfig(**sections, officers=officers, source=source)


def _read_officers(raw: Any, base: Path | None, problems: Problems) -> list[dict]:
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        problems.append(("officers", f"must be an array of tables ([[officers]]), got {as_written(raw)}"))
        return []
    roster = []
    first_with: dict[tuple[str, str], str] = {}  # (field, value) -> label of the first officer
    for i, table in enumerate(raw):
        label = f"officers[{i}]"
        officer = _SCHEMA.read_table(table, "officers", label, base, problems)
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


def _check_across(v: dict[str, Any], problems: Problems) -> None:
    """Rules that involve several keys; each runs only if its keys are individually valid."""
    def have(*paths: str) -> bool:
        return all(p in v for p in paths)

    add = problems.append
    not_both(v, "mqtt.password", "mqtt.password_file", problems)
    together(v, "mqtt.cert_file", "mqtt.key_file", problems)
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


def _check_pins(v: dict[str, Any], problems: Problems) -> None:
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


# --- generated text ------------------------------------------------------------------------

def example_config() -> str:
    """A complete, commented config: required keys with example values, the rest at defaults."""
    return _SCHEMA.example([
        "# hailong device configuration.",
        "# Generated from device/config.py (`hailong device example-config`); every key is shown.",
        "# Keys marked Required must be set; the others show their defaults, and commented-out",
        "# keys are unset. Relative paths are relative to this file. Reference: docs/device-config.md"])


def config_reference_markdown() -> str:
    """The contents of docs/device-config.md."""
    preamble = [
        "# Device configuration reference", "",
        "<!-- Generated from device/config.py by `python -m device.config --write-docs`; do not edit. -->",
        "",
        "Each counter's Raspberry Pi reads one TOML file. `hailong device example-config` prints a "
        "complete commented example. Validation reports every problem at once, each with its dotted "
        "key; unknown keys are errors (with a suggestion) so a typo cannot silently fall back to a "
        "default. Relative paths are resolved against the config file's directory."]
    labels = ["", "Default `rating.labels` by `rating.scale`:", "",
              *(f"- {scale}: `{toml_literal(labels)}`" for scale, labels in DEFAULT_LABELS.items())]
    return _SCHEMA.markdown(preamble, {"rating": labels}, _CROSS_RULES)


def main(argv: list[str] | None = None) -> int:
    return config_tool(argv, prog="python -m device.config", description="Device configuration tools.",
                       docs_path=DOCS_PATH, markdown=config_reference_markdown, example=example_config,
                       load=load_config, error=ConfigError)


if __name__ == "__main__":
    sys.exit(main())

"""The device's configuration: one declarative schema, everything else derived from it.

`SCHEMA` (in common/device_file.py, because provisioning writes the same file) lists every key
with its type, default (or REQUIRED), constraints and a description. Loading, validation,
docs/device-config.md and the example config (`hailong device example-config`) are all generated
from it by the shared machinery in common/configschema.py, so they cannot drift. Validation
collects every problem before failing, and unknown keys are errors with a suggestion.

This module adds what is the device's own: its dataclasses, the rules that span several keys
(pins above all) and the officer roster.

Run `python -m device.config --write-docs` after changing the schema.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.configschema import (
    FILE_KEY, REQUIRED, Key, Problems, Schema, as_written, broker_address, check_broker_form, config_tool, not_both,
    read_secret_file, together,
)
from common.device_file import (
    ARRAY_SECTIONS, DEFAULT_LABELS, DOCS_PATH, SCHEMA, SECTIONS, config_reference_markdown, example_config,
)
from device.errors import ConfigError

__all__ = [
    "REQUIRED", "SCHEMA", "SECTIONS", "FILE_KEY", "DOCS_PATH", "DEFAULT_LABELS", "Key",
    "DeviceConfig", "DeviceSection", "MqttSection", "LedgerSection", "RatingSection",
    "StaffSection", "KioskSection", "QueueButton", "PinsSection", "BuzzerSection", "DisplaySection", "BadgeSection",
    "ClockSection", "TelemetrySection", "UpdateSection", "Officer",
    "load_config", "config_from_dict", "example_config", "config_reference_markdown",
]

# Pins the kernel claims for the display's SPI bus (SCLK, MOSI, MISO, CE0, and CE1 when
# the display sits on it) and for the badge reader's UART; gpiozero cannot share them.
_SPI_PINS = {0: (8, 9, 10, 11), 1: (18, 19, 20, 21)}
_SPI_CE1 = {0: 7, 1: 17}
_UART_PINS = (14, 15)

_SCHEMA = Schema(SECTIONS, SCHEMA, ConfigError, arrays=frozenset(ARRAY_SECTIONS))


# --- the parsed configuration -------------------------------------------------------------

@dataclass(frozen=True)
class DeviceSection:
    id: str
    site: str
    counter: str
    role: str
    data_dir: Path


@dataclass(frozen=True)
class MqttSection:
    host: str | None  # None when hosts is set
    port: int | None
    hosts: tuple[str, ...] | None
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

    @property
    def brokers(self) -> tuple[tuple[str, int], ...]:
        """(host, port) of every broker to try, in order: hosts, or the one host and port."""
        if self.hosts:
            return tuple(broker_address(h) for h in self.hosts)
        return ((self.host, self.port),)


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
    hold_noshow_s: float


@dataclass(frozen=True)
class KioskSection:
    centre: str
    priority_button: int
    priority_window_s: float
    status_led: int | None
    number_timeout_s: float
    block_low: int
    printer: str
    printer_port: str
    printer_baud: int
    printer_usb_id: str | None
    text: str
    code_page: int
    paper_dots: int
    font: Path | None
    printer_poll_s: float


@dataclass(frozen=True)
class QueueButton:
    id: str
    name: str
    button: int


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
class UpdateSection:
    public_key: str | None
    health_timeout_s: float
    max_starts: int
    quiet_s: float
    idle_s: float


@dataclass(frozen=True)
class Officer:
    id: str
    name: str
    code: str
    badge: str | None  # upper-case hex


_SECTION_TYPES: dict[str, type] = {
    "device": DeviceSection, "mqtt": MqttSection, "ledger": LedgerSection,
    "rating": RatingSection, "staff": StaffSection, "kiosk": KioskSection, "pins": PinsSection,
    "buzzer": BuzzerSection, "display": DisplaySection, "badge": BadgeSection,
    "clock": ClockSection, "telemetry": TelemetrySection, "update": UpdateSection, "officers": Officer,
    "queues": QueueButton,
}


@dataclass(frozen=True)
class DeviceConfig:
    device: DeviceSection
    mqtt: MqttSection
    ledger: LedgerSection
    rating: RatingSection
    staff: StaffSection
    kiosk: KioskSection
    pins: PinsSection
    buzzer: BuzzerSection
    display: DisplaySection
    badge: BadgeSection
    clock: ClockSection
    telemetry: TelemetrySection
    update: UpdateSection
    officers: tuple[Officer, ...] = ()
    queues: tuple[QueueButton, ...] = ()
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
    queues = _read_queues(data.get("queues", []), base, problems)
    _fill_derived_defaults(values)
    _check_across(values, problems, queues)
    _check_kiosk(values, queues, problems)
    read_secret_file(values, "mqtt.password_file", "mqtt.password", problems)
    if problems:
        raise ConfigError(problems, source)
    sections = {name: _SCHEMA.make(cls, name, values)
                for name, cls in _SECTION_TYPES.items() if name not in ARRAY_SECTIONS}
    officers = tuple(_SCHEMA.make(Officer, "officers", o) for o in roster)
    buttons = tuple(_SCHEMA.make(QueueButton, "queues", q) for q in queues)
    return DeviceConfig(**sections, officers=officers, queues=buttons, source=source)


def _read_queues(raw: Any, base: Path | None, problems: Problems) -> list[dict]:
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        problems.append(("queues", f"must be an array of tables ([[queues]]), got {as_written(raw)}"))
        return []
    queues, seen = [], {}
    for i, table in enumerate(raw):
        label = f"queues[{i}]"
        queue = _SCHEMA.read_table(table, "queues", label, base, problems)
        qid = queue.get("queues.id")
        if qid in seen:
            problems.append((f"{label}.id", f"{qid!r} is already used by {seen[qid]}.id"))
        elif qid is not None:
            seen[qid] = label
        queues.append(queue)
    return queues


def _check_kiosk(v: dict[str, Any], queues: list[dict], problems: Problems) -> None:
    if v.get("device.role") != "kiosk":
        if queues:
            problems.append(("queues", 'queue buttons need device.role = "kiosk"'))
        return
    if not queues:
        problems.append(("queues", "a kiosk needs at least one [[queues]] table"))


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


def _check_across(v: dict[str, Any], problems: Problems, queues: list[dict] = ()) -> None:
    """Rules that involve several keys; each runs only if its keys are individually valid."""
    def have(*paths: str) -> bool:
        return all(p in v for p in paths)

    add = problems.append
    check_broker_form(v, problems, default_host=None)
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
    _check_pins(v, problems, queues)


def _counter_pins(v: dict[str, Any]) -> list[tuple[str, int]]:
    # Only the pins actually driven count: extra list entries beyond the scale are unused.
    scale = v.get("rating.scale", 5)
    uses = [(f"{key}[{i}]", pin)
            for key in ("pins.rating_buttons", "pins.rating_leds")
            for i, pin in enumerate(v.get(key, ())[:scale])]
    return uses + [(key, v[key]) for key in ("pins.next_button", "pins.recall_button") if key in v]


def _kiosk_pins(v: dict[str, Any], queues: list[dict]) -> list[tuple[str, int]]:
    uses = [(f"queues[{i}].button", q["queues.button"]) for i, q in enumerate(queues) if "queues.button" in q]
    return uses + [(key, v[key]) for key in ("kiosk.priority_button", "kiosk.status_led") if v.get(key) is not None]


def _check_pins(v: dict[str, Any], problems: Problems, kiosk_queues: list[dict] = ()) -> None:
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
    uses = _kiosk_pins(v, kiosk_queues) if v.get("device.role") == "kiosk" else _counter_pins(v)
    if v.get("buzzer.enabled") and "buzzer.pin" in v:  # a disabled buzzer claims no pin
        uses.append(("buzzer.pin", v["buzzer.pin"]))
    for key, pin in uses:
        if pin in owner:
            problems.append((key, f"pin {pin} is also used by {owner[pin]}"))
        else:
            owner[pin] = key


def main(argv: list[str] | None = None) -> int:
    return config_tool(argv, prog="python -m device.config", description="Device configuration tools.",
                       docs_path=DOCS_PATH, markdown=config_reference_markdown, example=example_config,
                       load=load_config, error=ConfigError)


if __name__ == "__main__":
    sys.exit(main())

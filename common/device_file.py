"""The counter's config file (device.toml): its keys, defaults, rules and generated text.

The file is a contract between two sides that must not import each other: the firmware
(device/config.py) reads and validates it; the technician's tool (provisioning/) writes it for
each device. Both take the schema from here. The firmware adds its cross-key rules and typed
sections; `hailong device example-config` and docs/device-config.md are generated from this.
"""
from __future__ import annotations

import re
from pathlib import Path

from common.configschema import (
    BROKERS_RULE, MQTT_PROTOCOLS, REQUIRED, TOPIC_PREFIX_RULE, Key, Schema, broker_address, is_topic_prefix,
    toml_literal,
)
from common.errors import ConfigError

__all__ = ["DEFAULT_LABELS", "SECTIONS", "ARRAY_SECTIONS", "SCHEMA", "CROSS_RULES", "DOCS_PATH",
           "example_config", "config_reference_markdown"]

DOCS_PATH = Path(__file__).resolve().parent.parent / "docs" / "device-config.md"

DEFAULT_LABELS: dict[int, tuple[str, ...]] = {
    3: ("Không hài lòng", "Hài lòng", "Rất hài lòng"),
    4: ("Không hài lòng", "Bình thường", "Hài lòng", "Rất hài lòng"),
    5: ("Rất không hài lòng", "Không hài lòng", "Bình thường", "Hài lòng", "Rất hài lòng"),
}

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HEX_RE = re.compile(r"[0-9A-Fa-f]+")
_QUEUE_RE = re.compile(r"[A-Za-z0-9_-]{1,16}")
_USB_ID_RE = re.compile(r"[0-9A-Fa-f]{4}:[0-9A-Fa-f]{4}")
_B64_KEY_RE = re.compile(r"[A-Za-z0-9+/]{43}=")


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
    "kiosk": "The ticket kiosk (device.role = \"kiosk\"): its printer, priority button and offline numbers.",
    "pins": "GPIO wiring as BCM numbers (0..27); no pin may be used twice.",
    "buzzer": "Optional buzzer for audible feedback.",
    "display": "The ticket-number display (MAX7219 on SPI).",
    "badge": "Optional serial RFID reader for officer badges (uses UART pins 14 and 15).",
    "clock": "Whether the local clock can be trusted for event timestamps.",
    "telemetry": "Periodic health reports.",
    "update": "Signed software updates from the service (docs/updates.md).",
    "officers": "Optional roster of officers who may sign in here; one [[officers]] table each.",
    "queues": "The kiosk's queue buttons, one [[queues]] table each (kiosk role only).",
}
ARRAY_SECTIONS = {"officers", "queues"}  # arrays of tables rather than single tables

SCHEMA: list[Key] = [
    _str("device.id", REQUIRED,
         "Unique identifier of this device; also its MQTT username and client id.",
         check=_ID_RE.fullmatch, example="hl-hp-kt-01-c03",
         rule_text="1..64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit"),
    _str("device.site", REQUIRED, "The one-stop administrative centre this counter belongs to.",
         example="kien-thuy", text=True),
    _str("device.counter", REQUIRED, "The counter (service desk) within the site, as known to citizens.",
         example="3", text=True),
    Key("device.role", "choice", "counter",
        'What this device is: "counter" (rating buttons, NEXT and RECALL) or "kiosk" (prints queue tickets).',
        choices={k: k for k in ("counter", "kiosk")}),
    Key("device.data_dir", "path", REQUIRED,
        "Directory for persistent state, including the vote ledger (ledger.db); must survive reboots.",
        example="/var/lib/hailong"),

    _str("mqtt.host", None, "Host name or IP address of the MQTT broker. Required unless hosts is set.",
         hi=None, example="mqtt.example.vn", recommended=True, default_text="**required** (or hosts)"),
    _int("mqtt.port", None, "TCP port of the MQTT broker (usually 1883, or 8883 with TLS); not with hosts.",
         lo=1, hi=65535, default_text="`1883`", example=1883),
    Key("mqtt.hosts", "list[str]", None,
        "Several brokers instead of host and port, each \"host:port\": the counter connects to one at a "
        "time and moves on to the next when it cannot connect or loses the connection (docs/brokers.md).",
        check=broker_address, rule_text=BROKERS_RULE, example=["mqtt-a.example.vn:1883", "mqtt-b.example.vn:1883"]),
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
        lo=1, default_text="depends on rating.scale (see below)", example=list(DEFAULT_LABELS[4]), text=True),
    _float("rating.repeat_gap_s", 15.0,
           "Presses this soon after an accepted rating count as the same citizen, not a new vote.",
           lo_open=False),
    _float("rating.grace_s", 10.0, "After NEXT, the previous ticket can still be rated for this long.",
           lo_open=False),
    _float("rating.feedback_s", 1.5, "How long the thank-you feedback is shown after a rating."),
    Key("rating.reasons", "list[str]", [],
        "Follow-up reasons asked after a low rating, mapped in order to the rating buttons "
        '(e.g. ["Chờ lâu", "Thái độ", "Hướng dẫn chưa rõ", "Khác"]); empty means no follow-up question.',
        lo=1, hi=100, text=True),
    _int("rating.ask_reason_max_score", 1,
         "Ratings at or below this score ask for a reason when reasons are configured (1..scale-1).",
         lo=1),
    _float("rating.reason_window_s", 6.0, "Seconds to wait for a reason before recording the rating without one."),

    _float("staff.hold_close_s", 3.0, "Holding NEXT this many seconds closes the counter."),
    _float("staff.ticket_timeout_s", 2.0,
           "Seconds to wait for the service's ticket number before showing a local fallback number."),
    _int("staff.fallback_start", 1, "First local fallback ticket number.", lo=1),
    _float("staff.hold_noshow_s", 1.5,
           "Holding RECALL this many seconds marks the current ticket a no-show and calls the next."),

    _str("kiosk.centre", "", "Centre name printed at the head of each ticket; empty means device.site.",
         lo=None, hi=None, text=True, example="Trung tâm Phục vụ hành chính công huyện Kiến Thụy"),
    _pin("kiosk.priority_button", 27,
         "Pin of the priority button (\"ưu tiên\"): press it, then a queue button, for a priority ticket."),
    _float("kiosk.priority_window_s", 10.0, "How long a press of the priority button waits for a queue button."),
    Key("kiosk.status_led", "int", None, "Pin of an LED that lights while the printer cannot print; unset: none.",
        lo=0, hi=27, example=17),
    _float("kiosk.number_timeout_s", 3.0,
           "Seconds to wait for the service's number before printing one from the kiosk's reserved block."),
    _int("kiosk.block_low", 5, "Ask the service for a new reserved block when fewer numbers than this remain.",
         lo=0, hi=999),
    Key("kiosk.printer", "choice", "usb",
        'How the ESC/POS printer is attached: "usb" (a USB printer class device, /dev/usb/lp0), '
        '"serial" (pyserial) or "file" (bytes appended to a file that must exist).',
        choices={k: k for k in ("usb", "serial", "file")}),
    _str("kiosk.printer_port", "/dev/usb/lp0", "Device path (usb), serial port (serial) or file (file).",
         hi=None),
    _int("kiosk.printer_baud", 19200, "Serial speed of the printer in baud (serial only).", lo=1),
    _str("kiosk.printer_usb_id", None,
         "USB vendor:product id of the printer (usb only); finds its /dev/usb/lp* when set.",
         check=_USB_ID_RE.fullmatch, rule_text="vvvv:pppp in hex", example="0416:5011"),
    Key("kiosk.text", "choice", "raster",
        'How text reaches paper: "raster" (rendered as an image: Vietnamese prints on any printer) or '
        '"codepage" (text in Windows-1258 with kiosk.code_page; only printers that have it).',
        choices={k: k for k in ("raster", "codepage")}),
    _int("kiosk.code_page", 52, "ESC t number of the printer's Windows-1258 code page (Epson: 52).",
         lo=0, hi=255),
    _int("kiosk.paper_dots", 576, "Printable width in dots (80 mm paper: 576; 58 mm: 384).", lo=128, hi=1024),
    Key("kiosk.font", "path", None,
        "TrueType font for raster tickets; unset means DejaVu Sans (Debian's fonts-dejavu-core).",
        must_exist=True, example="/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    _float("kiosk.printer_poll_s", 5.0, "Seconds between printer status checks (paper out, missing)."),

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

    _str("update.public_key", None,
         "The release key's public half (base64, from `hailong provision release key`); without it every "
         "update is refused.", lo=44, hi=44, check=_B64_KEY_RE.fullmatch, rule_text="44 characters of base64",
         example="11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="),
    _float("update.health_timeout_s", 600.0,
           "Seconds a new version has to become healthy (ledger, MQTT online, an event acked) before the "
           "counter switches back by itself.", lo=10, lo_open=False),
    _int("update.max_starts", 3, "Starts of a new version without becoming healthy before it counts as "
         "crash-looping and the counter switches back.", lo=1, hi=20),
    _float("update.quiet_s", 120.0, "With no new event to be acked, MQTT online this long (and the ledger "
           "readable) counts as healthy.", lo=1, lo_open=False),
    _float("update.idle_s", 20.0, "Seconds without a press (and no open question) before a downloaded "
           "version may be switched to.", lo=1, lo_open=False),

    _str("officers.id", REQUIRED, "Officer identifier, unique in the roster.", example="cb-0012", text=True),
    _str("officers.name", "", "Officer's full name, for reports.", lo=None, hi=None,
         example="Nguyễn Văn An", text=True),
    _str("officers.code", REQUIRED, "Short code shown on the display while the officer is signed in.",
         hi=8, example="AN", text=True),
    _str("officers.badge", None, "UID of the officer's badge in hex (any case); unique in the roster.",
         lo=2, hi=32, check=_HEX_RE.fullmatch, rule_text="2..32 hex digits", example="04A1B2C3"),

    _str("queues.id", REQUIRED, "Queue id as the service knows it; unique among the queues.",
         check=_QUEUE_RE.fullmatch, rule_text="1..16 characters of A-Z a-z 0-9 _ -", example="A"),
    _str("queues.name", REQUIRED, "Queue name printed on the ticket.", hi=None, text=True, example="Đất đai"),
    Key("queues.button", "int", REQUIRED, "Pin of this queue's button.", lo=0, hi=27, example=22),
]

# Rules spanning several keys, for the docs; enforced by _check_across and _read_officers.
CROSS_RULES = [
    "Either `mqtt.host` (with `mqtt.port`) or `mqtt.hosts`, not both; `mqtt.hosts` lists at least one broker, "
    "none twice.",
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
    "A kiosk (`device.role = \"kiosk\"`) needs at least one `[[queues]]`; queue ids are unique. Its pins "
    "(queue buttons, `kiosk.priority_button`, `kiosk.status_led`, `buzzer.pin`) follow the same no-sharing "
    "rules; the counter's rating, NEXT and RECALL pins are not used.",
]


# For the generated text only; device/config.py validates with its own error type.
_SCHEMA = Schema(SECTIONS, SCHEMA, ConfigError, arrays=frozenset(ARRAY_SECTIONS))


# --- generated text ------------------------------------------------------------------------

def example_config() -> str:
    """A complete, commented config: required keys with example values, the rest at defaults."""
    return _SCHEMA.example([
        "# hailong device configuration.",
        "# Generated from common/device_file.py (`hailong device example-config`); every key is shown.",
        "# Keys marked Required must be set; the others show their defaults, and commented-out",
        "# keys are unset. Relative paths are relative to this file. Reference: docs/device-config.md"])


def config_reference_markdown() -> str:
    """The contents of docs/device-config.md."""
    preamble = [
        "# Device configuration reference", "",
        "<!-- Generated from common/device_file.py by `python -m device.config --write-docs`; do not edit. -->",
        "",
        "Each counter's Raspberry Pi reads one TOML file. `hailong device example-config` prints a "
        "complete commented example. Validation reports every problem at once, each with its dotted "
        "key; unknown keys are errors (with a suggestion) so a typo cannot silently fall back to a "
        "default. Relative paths are resolved against the config file's directory."]
    labels = ["", "Default `rating.labels` by `rating.scale`:", "",
              *(f"- {scale}: `{toml_literal(labels)}`" for scale, labels in DEFAULT_LABELS.items())]
    return _SCHEMA.markdown(preamble, {"rating": labels}, CROSS_RULES)

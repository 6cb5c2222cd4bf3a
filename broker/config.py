"""The central service's configuration: one declarative schema, everything else derived from it.

Like the device's (device/config.py) and through the same machinery
(common/configschema.py): `SCHEMA` drives loading, validation that reports every problem
at once, docs/broker-config.md and the example config (`hailong broker example-config`).

Run `python -m broker.config --write-docs` after changing the schema.
"""
from __future__ import annotations

import sys
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common.errors import ConfigError
from common.periods import DEFAULT_TZ
from broker.alerts.settings import (
    ALERT_KEYS, RULES_TEXT as ALERT_RULES, AlertsSection, EmailSection, WebhookSection, check_alerts,
)
from common.configschema import (
    BROKERS_RULE, FILE_KEY, MQTT_PROTOCOLS, REQUIRED, TOPIC_PREFIX_RULE, Key, Problems, Schema, broker_address,
    check_broker_form, config_tool, is_topic_prefix, not_both, read_secret_file, together,
)

__all__ = [
    "ConfigError", "REQUIRED", "SCHEMA", "SECTIONS", "FILE_KEY", "DOCS_PATH", "SQLITE_URL", "Key",
    "BrokerConfig", "ServiceSection", "MqttSection", "StoreSection", "HttpSection", "AuthSection", "HallSection",
    "load_config", "config_from_dict", "example_config", "config_reference_markdown",
]

DOCS_PATH = Path(__file__).resolve().parent.parent / "docs" / "broker-config.md"
SQLITE_URL = "sqlite:///"
DEFAULT_CLIENT_ID = "hailong-service"
SESSION_EXPIRY_S = 604800  # one instance: a week of events waits in the broker while it is down
# Several instances: a dead one's share comes back to the others this soon (the counters re-send
# what it held), while a restart within it still finds its session.
SHARED_SESSION_EXPIRY_S = 60
SESSION_SECRET_NAME = "session-secret"  # in service.data_dir when http.session_secret_file is unset


def _is_postgres_url(url: str) -> bool:
    """postgresql://[user[:password]@]host[:port]/database[?options]: a host and a database, a numeric port."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  (raises ValueError for a port that is no number)
    except ValueError:
        return False
    host = parts.hostname or "host=" in parts.query  # a Unix socket directory comes as ?host=/run/postgresql
    return parts.scheme in ("postgresql", "postgres") and bool(host) and len(parts.path) > 1 \
        and "/" not in parts.path[1:]


def _is_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):  # ValueError: not a relative key, e.g. "/etc/x"
        return False
    return True


def _port(path: str, default: int, doc: str) -> Key:
    return Key(path, "int", default, doc, lo=1, hi=65535)


def _text(path: str, default: Any, doc: str, **kw) -> Key:
    return Key(path, "str", default, doc, lo=1, **kw)


SECTIONS: dict[str, str] = {
    "service": "The central service itself: its name, state directory, clock and counting rules.",
    "mqtt": "The MQTT broker the counters and the service meet at: Mosquitto, or one embedded in the service.",
    "store": "Where committed events are kept.",
    "http": "The HTTP API and dashboard.",
    "auth": "Dashboard logins; repeated failures lock the account for a while, against password guessing.",
    "hall": "The hall display (/hall/SITE): the TV that shows the calls and announces them by voice.",
    "alerts": "Alerts (docs/alerts.md): the rules' thresholds, opening hours by default, how often they are checked.",
    "email": "Alert e-mails over SMTP; unset host means no e-mail.",
    "webhook": "Alert notices as a signed JSON POST (for a Zalo or Telegram bridge); unset url means none.",
}

SCHEMA: list[Key] = [
    _text("service.name", "Trung tâm Phục vụ hành chính công",
          "Name of the centre, shown in reports and on the dashboard."),
    Key("service.data_dir", "path", "/var/lib/hailong",
        "Directory for the service's own state (such as the generated session secret); must survive reboots."),
    _text("service.timezone", DEFAULT_TZ,
          "Time zone that days, shifts and reports are counted in.",
          check=_is_zone, rule_text='a time zone name known to this system, e.g. "Asia/Ho_Chi_Minh"'),
    Key("service.satisfied_from", "int", 0,
        "Lowest rating counted as satisfied; 0 means the top two levels of each counter's scale.",
        lo=0, hi=5),
    Key("service.ticket_fresh_s", "float", 5.0,
        "A NEXT call older than this many seconds when it arrives is a replay from a counter's "
        "backlog and gets no ticket number.",
        lo=0, lo_open=True),
    Key("service.queue_block_size", "int", 10,
        "How many numbers of a queue the service reserves for a kiosk at a time, for it to print "
        "when the service does not answer (docs/protocol.md, the queue).",
        lo=1, hi=999),

    Key("mqtt.embedded", "bool", REQUIRED,
        "Run an MQTT broker inside the service (amqtt: MQTT 3.1.1, queues in memory only) for a "
        "small site or a demo; false means connect to a separate broker such as Mosquitto.",
        example=False),
    _text("mqtt.host", None, "Host name or IP address of the MQTT broker the service connects to; not with hosts.",
          default_text='`"127.0.0.1"` (unless hosts)', example="127.0.0.1"),
    Key("mqtt.port", "int", None,
        "TCP port of the MQTT broker; with embedded = true, the port the embedded broker listens on; not with hosts.",
        lo=1, hi=65535, default_text="`1883` (unless hosts)", example=1883),
    Key("mqtt.hosts", "list[str]", None,
        'Several independent brokers instead of host and port, each "host:port": the service consumes from '
        "all of them at once, as the counters fail over between them (docs/brokers.md). Not with embedded = true.",
        check=broker_address, rule_text=BROKERS_RULE, example=["10.20.0.2:1883", "10.20.0.3:1883"]),
    _text("mqtt.username", "hailong-service",
          "MQTT username of the service, which the broker's ACL lets read every counter's events."),
    _text("mqtt.password", None,
          "MQTT password written inline; prefer password_file so the secret stays out of this file.",
          example="change-me"),
    Key("mqtt.password_file", "path", None,
        "File holding the MQTT password (trailing newline ignored), read at load time; "
        "set at most one of password and password_file, neither means anonymous.",
        example="/etc/hailong/mqtt-password", recommended=True),
    Key("mqtt.protocol", "choice", None,
        'MQTT protocol version: "5" or "3.1.1" (5, "v5", "311" and "v311" are accepted too).',
        choices=MQTT_PROTOCOLS, default_text='`"5"`, or `"3.1.1"` when embedded = true', example="5"),
    _text("mqtt.prefix", "hailong/v1", "Topic prefix shared by all hailong topics; the same on every counter.",
          check=is_topic_prefix, rule_text=TOPIC_PREFIX_RULE),
    _text("mqtt.client_id", DEFAULT_CLIENT_ID,
          "MQTT client id of the service; its persistent session is kept under this id, so run one service per id "
          "(with shared_group, each instance needs its own, e.g. hailong-service-a and hailong-service-b)."),
    _text("mqtt.shared_group", None,
          "Run several service instances on one event stream (docs/instances.md): each instance subscribes to "
          "events and kiosk requests as the MQTT shared subscription $share/GROUP/..., so the broker hands each "
          "message to one of them; statuses and telemetry still reach every instance. The same group on every "
          "instance; unset means one instance takes every message.",
          check=lambda v: not any(c in v for c in "/+#"), rule_text="a name without /, + or #",
          example="hailong", hi=64),
    Key("mqtt.tls", "bool", False, "Connect to the broker with TLS."),
    Key("mqtt.ca_file", "path", None, "CA certificates that verify the broker; unset means the system trust store.",
        must_exist=True, example="/etc/hailong/ca.crt"),
    Key("mqtt.cert_file", "path", None, "Client certificate for mutual TLS; set together with key_file.",
        must_exist=True, example="/etc/hailong/service.crt"),
    Key("mqtt.key_file", "path", None, "Private key of cert_file.",
        must_exist=True, example="/etc/hailong/service.key"),
    Key("mqtt.passwd_file", "path", None,
        "Mosquitto password file whose accounts the embedded broker admits (embedded = true only; "
        "`hailong provision mosquitto export` writes it, as for Mosquitto). Nobody else can connect.",
        must_exist=True, example="/etc/hailong/mosquitto/passwd"),
    Key("mqtt.acl_file", "path", None,
        "Mosquitto ACL file confining each account of passwd_file to its own topics (embedded = true only; "
        "written with passwd_file).",
        must_exist=True, example="/etc/hailong/mosquitto/acl"),
    _text("mqtt.embedded_bind", "127.0.0.1",
          "Address the embedded broker listens on (embedded = true only); loopback unless counters "
          'must reach it, then e.g. "0.0.0.0".'),
    Key("mqtt.session_expiry_s", "int", None,
        "Seconds the broker keeps the service's session, and the events queued for it, while the "
        "service is down (MQTT 5). With shared_group it is short: Mosquitto keeps handing a dead "
        "instance's session its share of the stream until the session expires (docs/instances.md).",
        lo=0, hi=2**32 - 1,  # MQTT 5 encodes it in four bytes
        default_text=f"`{SESSION_EXPIRY_S}` (a week), or `{SHARED_SESSION_EXPIRY_S}` with shared_group",
        example=SESSION_EXPIRY_S),
    Key("mqtt.keepalive_s", "int", 30,
        "Seconds between keepalive pings; bounds how fast a dead (half-open) link to the broker is noticed.",
        lo=5, hi=600),
    Key("mqtt.batch_max", "int", 500, "Most events committed to the store in one transaction (group commit).",
        lo=1, hi=5000),
    Key("mqtt.batch_wait_ms", "int", 20,
        "Longest wait, in milliseconds, for more events to fill a group commit; 0 commits what has arrived at once.",
        lo=0, hi=1000),

    _text("store.url", REQUIRED,
          "Database of committed events (and of the API's users and tokens). A relative path after sqlite:/// "
          "is relative to this file's directory; an absolute one makes four slashes, as in the example. "
          "A PostgreSQL database instead: postgresql://user@host:port/database (docs/store.md); "
          "several service instances may share one.",
          check=lambda v: (v.startswith(SQLITE_URL) and len(v) > len(SQLITE_URL)) or _is_postgres_url(v),
          rule_text='an SQLite URL, "sqlite:///" followed by the path of the database file, or a PostgreSQL '
                    'URL, "postgresql://user@host:port/database"',
          example="sqlite:////var/lib/hailong/hailong.db"),

    _text("http.host", "127.0.0.1",
          "Address the HTTP API and dashboard listen on; loopback by default, for a reverse proxy in front."),
    _port("http.port", 8080, "TCP port of the HTTP API and dashboard."),
    Key("http.session_secret_file", "path", None,
        "File holding the secret that signs login sessions; when unset, the service generates "
        f"service.data_dir/{SESSION_SECRET_NAME} at first start and reuses it, so logins survive restarts.",
        must_exist=True, default_text=f"service.data_dir/{SESSION_SECRET_NAME} (generated)",
        example="/etc/hailong/session-secret"),
    _text("http.public_url", None,
          "URL the counters reach this service's HTTP API at, for fleet-update downloads (docs/updates.md); "
          "when unset, http://http.host:http.port.",
          check=lambda v: v.startswith(("http://", "https://")), rule_text="an http:// or https:// URL",
          example="http://10.20.0.2:8080", hi=200),
    Key("http.cookie_secure", "bool", False,
        "Send the session cookie over HTTPS only; set true when the dashboard is served through HTTPS."),

    Key("auth.lockout_attempts", "int", 5, "Failed logins in a row after which an account is locked.", lo=1),
    Key("auth.lockout_minutes", "int", 15, "Minutes a locked account stays locked.", lo=1),

    Key("hall.voice_dir", "path", None,
        "Folder of recorded voice clips that replace the shipped espeak-ng ones, file by file: "
        "NAME.wav, .ogg or .mp3 for each clip name in docs/queue.md; a clip it lacks stays the shipped one.",
        example="/etc/hailong/voice"),
    *ALERT_KEYS,
]

# Rules spanning several keys, for the docs; enforced by _check_across and _resolve_store_path.
_CROSS_RULES = [
    "Either `mqtt.host` (with `mqtt.port`) or `mqtt.hosts`, not both; `mqtt.hosts` lists at least one broker, "
    "none twice, and does not combine with `mqtt.embedded = true`.",
    "`mqtt.password` and `mqtt.password_file` cannot both be set; the file must be readable and non-empty.",
    "`mqtt.cert_file` and `mqtt.key_file` are set together or not at all.",
    '`mqtt.protocol` must be "3.1.1" when `mqtt.embedded` is true: the embedded broker (amqtt) '
    "speaks MQTT 3.1.1 only. Left unset, it follows `mqtt.embedded`.",
    "With `mqtt.embedded` true, `mqtt.passwd_file` and `mqtt.acl_file` are required, and the service logs in "
    "to its own broker like any client: `mqtt.password` or `mqtt.password_file` is required too.",
    "`mqtt.shared_group` needs an external broker (`mqtt.embedded` false: the embedded one has no shared "
    "subscriptions) spoken to in MQTT 5 (a 3.1.1 session never expires, so a dead instance would keep its "
    "share of the stream), its own `mqtt.client_id` on every instance (the default `hailong-service` is refused "
    "with it, since two instances with one client id take each other's session over and over), and "
    "`http.session_secret_file`, the same secret on every instance, so a login made on one works on all.",
    "`hall.voice_dir` must be an existing folder.",
    "`store.url`: `sqlite:///hailong.db` is `hailong.db` beside this file; "
    "`sqlite:////var/lib/hailong/hailong.db` is the absolute path `/var/lib/hailong/hailong.db`; "
    "`postgresql://hailong@db.example.vn:5432/hailong` is a PostgreSQL database (the password from "
    "`~/.pgpass` or `PGPASSFILE`, or in the URL).",
    *ALERT_RULES,
]

_SCHEMA = Schema(SECTIONS, SCHEMA, ConfigError)


# --- the parsed configuration -------------------------------------------------------------

@dataclass(frozen=True)
class ServiceSection:
    name: str
    data_dir: Path
    timezone: str
    satisfied_from: int
    ticket_fresh_s: float
    queue_block_size: int

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


@dataclass(frozen=True)
class MqttSection:
    embedded: bool
    host: str | None  # None when hosts is set
    port: int | None
    hosts: tuple[str, ...] | None
    username: str
    password: str | None = field(repr=False)  # resolved from password_file; never logged
    password_file: Path | None
    protocol: str
    prefix: str
    client_id: str
    shared_group: str | None
    tls: bool
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    passwd_file: Path | None
    acl_file: Path | None
    embedded_bind: str
    session_expiry_s: int
    keepalive_s: int
    batch_max: int
    batch_wait_ms: int

    @property
    def brokers(self) -> tuple[tuple[str, int], ...]:
        """(host, port) of every broker the service consumes from: hosts, or the one host and port."""
        if self.hosts:
            return tuple(broker_address(h) for h in self.hosts)
        return ((self.host, self.port),)


@dataclass(frozen=True)
class StoreSection:
    url: str  # sqlite:///<path>, the path resolved against the config file's directory; or postgresql://...

    @property
    def path(self) -> Path:
        """The SQLite file (meaningless for a PostgreSQL store: see `postgres`)."""
        return Path(self.url.removeprefix(SQLITE_URL))

    @property
    def postgres(self) -> bool:
        return self.url.startswith(("postgresql://", "postgres://"))


@dataclass(frozen=True)
class HttpSection:
    host: str
    port: int
    session_secret_file: Path | None
    public_url: str | None
    cookie_secure: bool


@dataclass(frozen=True)
class AuthSection:
    lockout_attempts: int
    lockout_minutes: int


@dataclass(frozen=True)
class HallSection:
    voice_dir: Path | None


_SECTION_TYPES: dict[str, type] = {
    "service": ServiceSection, "mqtt": MqttSection, "store": StoreSection,
    "http": HttpSection, "auth": AuthSection, "hall": HallSection,
    "alerts": AlertsSection, "email": EmailSection, "webhook": WebhookSection,
}


@dataclass(frozen=True)
class BrokerConfig:
    service: ServiceSection
    mqtt: MqttSection
    store: StoreSection
    http: HttpSection
    auth: AuthSection
    hall: HallSection
    alerts: AlertsSection
    email: EmailSection
    webhook: WebhookSection
    source: Path | None = None

    @property
    def session_secret_path(self) -> Path:
        """The configured session secret, or where the service generates one."""
        return self.http.session_secret_file or self.service.data_dir / SESSION_SECRET_NAME


# --- loading and validation ----------------------------------------------------------------

def load_config(path: str | Path) -> BrokerConfig:
    """Read and validate a TOML config file; raise ConfigError listing every problem."""
    path = Path(path).absolute()
    return config_from_dict(_SCHEMA.load_toml(path), base_dir=path.parent, source=path)


def config_from_dict(data: dict, base_dir: Path | None = None, *,
                     source: Path | None = None) -> BrokerConfig:
    """Validate parsed TOML. Relative paths are resolved against base_dir (kept as is without it)."""
    base = Path(base_dir) if base_dir is not None else None
    values, problems = _SCHEMA.read(data, base, source)
    _check_across(values, problems)
    read_secret_file(values, "mqtt.password_file", "mqtt.password", problems)
    check_alerts(values, problems)
    if problems:
        raise ConfigError(problems, source)
    _resolve_store_path(values, base)
    sections = {name: _SCHEMA.make(cls, name, values) for name, cls in _SECTION_TYPES.items()}
    return BrokerConfig(**sections, source=source)


def _check_across(v: dict[str, Any], problems: Problems) -> None:
    """Rules that involve several keys; each runs only if its keys are individually valid."""
    not_both(v, "mqtt.password", "mqtt.password_file", problems)
    together(v, "mqtt.cert_file", "mqtt.key_file", problems)
    check_broker_form(v, problems, default_host="127.0.0.1")
    if v.get("mqtt.embedded") and v.get("mqtt.hosts") is not None:
        problems.append(("mqtt.hosts", "the embedded broker is a single broker: set embedded = false to use hosts"))
    if "mqtt.embedded" in v and "mqtt.protocol" in v:
        if v["mqtt.protocol"] is None:
            v["mqtt.protocol"] = "3.1.1" if v["mqtt.embedded"] else "5"
        elif v["mqtt.embedded"] and v["mqtt.protocol"] == "5":
            problems.append(("mqtt.protocol", "the embedded broker speaks MQTT 3.1.1 only"))
    if v.get("mqtt.embedded"):
        _check_embedded(v, problems)
    if v.get("mqtt.shared_group") is not None:
        _check_shared(v, problems)
    if "mqtt.session_expiry_s" in v and v["mqtt.session_expiry_s"] is None:
        shared = v.get("mqtt.shared_group") is not None
        v["mqtt.session_expiry_s"] = SHARED_SESSION_EXPIRY_S if shared else SESSION_EXPIRY_S
    if v.get("hall.voice_dir") is not None and not v["hall.voice_dir"].is_dir():
        problems.append(("hall.voice_dir", f"folder not found: {v['hall.voice_dir']}"))


def _check_embedded(v: dict[str, Any], problems: Problems) -> None:
    # An embedded broker open to anonymous clients would let anyone on the LAN vote.
    why = "required with embedded = true: the embedded broker admits only provisioned accounts"
    for key in ("mqtt.passwd_file", "mqtt.acl_file"):
        if key in v and v[key] is None:
            problems.append((key, why))
    if all(k in v for k in ("mqtt.password", "mqtt.password_file")) and v["mqtt.password"] is None \
            and v["mqtt.password_file"] is None:
        problems.append(("mqtt.password_file", "required with embedded = true (or mqtt.password): "
                                               "the service logs in to its embedded broker like any client"))


def _check_shared(v: dict[str, Any], problems: Problems) -> None:
    if v.get("mqtt.embedded"):
        problems.append(("mqtt.shared_group", "needs an external broker such as Mosquitto: the embedded broker "
                                              "has no shared subscriptions (and serves one instance anyway)"))
    elif v.get("mqtt.protocol") == "3.1.1":
        problems.append(("mqtt.protocol", 'must be "5" with shared_group: an MQTT 3.1.1 session never expires, '
                                          "and Mosquitto keeps handing a dead instance's session its share of "
                                          "the stream until that instance returns"))
    if "http.session_secret_file" in v and v["http.session_secret_file"] is None:
        problems.append(("http.session_secret_file", "required with mqtt.shared_group: every instance must sign "
                                                     "logins with the same secret, or a session made on one is "
                                                     "refused by the others (copy one file to each)"))
    if v.get("mqtt.client_id") == DEFAULT_CLIENT_ID:
        problems.append(("mqtt.client_id", "set a client id of this instance's own with shared_group (e.g. "
                                           f"{DEFAULT_CLIENT_ID}-a): instances sharing one id take each other's "
                                           "session over"))


def _resolve_store_path(v: dict[str, Any], base: Path | None) -> None:
    # Resolved here, like the path keys, so the service never depends on its working directory.
    if not v["store.url"].startswith(SQLITE_URL):
        return  # PostgreSQL: nothing on disk
    path = Path(v["store.url"].removeprefix(SQLITE_URL))
    if base is not None and not path.is_absolute():
        v["store.url"] = SQLITE_URL + str(base / path)


# --- generated text ------------------------------------------------------------------------

def example_config() -> str:
    """A complete, commented config: required keys with example values, the rest at defaults."""
    return _SCHEMA.example([
        "# hailong central service configuration (e.g. /etc/hailong/broker.toml).",
        "# Generated from broker/config.py (`hailong broker example-config`); every key is shown.",
        "# Keys marked Required must be set; the others show their defaults, and commented-out",
        "# keys are unset. Relative paths are relative to this file. Reference: docs/broker-config.md"])


def config_reference_markdown() -> str:
    """The contents of docs/broker-config.md."""
    return _SCHEMA.markdown([
        "# Central service configuration reference", "",
        "<!-- Generated from broker/config.py by `python -m broker.config --write-docs`; do not edit. -->",
        "",
        "The central service reads one TOML file, `/etc/hailong/broker.toml` under "
        "deploy/hailong-broker.service. `hailong broker example-config` prints a complete "
        "commented example and `python -m broker.config --check FILE` validates one. Only "
        "`mqtt.embedded` and `store.url` must be set. Validation reports every problem at once, "
        "each with its dotted key; unknown keys are errors (with a suggestion) so a typo cannot "
        "silently fall back to a default. Relative paths, including the one in `store.url`, are "
        "resolved against the config file's directory."], rules=_CROSS_RULES)


def main(argv: list[str] | None = None) -> int:
    return config_tool(argv, prog="python -m broker.config", description="Central service configuration tools.",
                       docs_path=DOCS_PATH, markdown=config_reference_markdown, example=example_config,
                       load=load_config, error=ConfigError)


if __name__ == "__main__":
    sys.exit(main())

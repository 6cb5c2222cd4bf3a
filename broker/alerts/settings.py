"""The service config's [alerts], [email] and [webhook] keys, their sections, and the rules across them.

Part of broker/config.py's schema (`ALERT_KEYS` is spliced into its SCHEMA), kept here so the
alerts' settings sit with the alerts. Secrets (the SMTP password, the webhook's signing key)
are read from files at load time, like mqtt.password_file, so a missing one is a config
problem at start-up, not a failed delivery hours later.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.alerts.hours import Hours
from broker.alerts.rules import RULES, Thresholds
from common.configschema import Key, Problems, not_both, read_secret_file

__all__ = ["ALERT_KEYS", "AlertsSection", "DEFAULT_HOURS", "EmailSection", "WebhookSection", "check_alerts"]

# A Vietnamese public office: mornings and afternoons on weekdays, Saturday morning.
DEFAULT_HOURS = "mon-fri 07:30-11:30,13:30-17:00; sat 07:30-11:30"
SECURITY = {"starttls": "starttls", "tls": "tls", "none": "none"}


def _is_hours(text: str) -> bool:
    try:
        Hours.from_text(text)
    except ValueError:
        return False
    return True


ALERT_KEYS: list[Key] = [
    Key("alerts.enabled", "bool", True, "Check the alert rules and send their notices."),
    Key("alerts.check_interval_s", "float", 30.0, "Seconds between two checks of the rules.", lo=0.05, hi=3600),
    Key("alerts.rules", "list[str]", tuple(RULES), "The rules that may raise alerts (docs/alerts.md).",
        check=lambda v: v in RULES, rule_text="a list of rule names: " + ", ".join(RULES)),
    Key("alerts.default_hours", "str", DEFAULT_HOURS,
        "Opening hours of a site that has none of its own (set per site in the dashboard or the API), "
        "in the site's time zone.", check=_is_hours,
        rule_text='opening hours such as "mon-fri 07:30-11:30,13:30-17:00; sat 07:30-11:30"'),
    Key("alerts.offline_after_s", "float", 600.0,
        "A counter offline for this many seconds of opening hours raises an alert.", lo=0, lo_open=True),
    Key("alerts.backlog_max", "int", 200, "A counter holding more unacknowledged events than this raises an alert.",
        lo=0),
    Key("alerts.backlog_age_s", "float", 3600.0,
        "A counter whose oldest unacknowledged event is older than this (when its telemetry says) raises an alert.",
        lo=0, lo_open=True),
    Key("alerts.low_streak", "int", 5, "An officer's lowest-level ratings in a row that raise an alert.", lo=1),
    Key("alerts.low_rate_below", "float", 0.5,
        "An officer's satisfaction rate over the last low_rate_window ratings below this raises an alert.",
        lo=0, hi=1),
    Key("alerts.low_rate_window", "int", 20, "How many of an officer's latest ratings the rate is taken over.",
        lo=1, hi=1000),
    Key("alerts.flagged_per_hour", "int", 30,
        "More flagged (repeat or chord) presses than this at one counter in the last hour raise an alert.", lo=0),
    Key("alerts.retry_min_s", "float", 5.0, "First wait before a failed notice is sent again; doubles each time.",
        lo=0, lo_open=True),
    Key("alerts.retry_max_s", "float", 900.0, "Longest wait between two attempts at a notice.", lo=0, lo_open=True),
    Key("alerts.daily_summary", "bool", False, "E-mail each site a summary of its day's alerts at closing time."),

    Key("email.host", "str", None, "SMTP server host name; unset means no alert e-mails.", lo=1,
        example="smtp.example.gov.vn"),
    Key("email.port", "int", 587, "SMTP server port (587 for STARTTLS, 465 for TLS, 25 for none).", lo=1, hi=65535),
    Key("email.security", "choice", "starttls", "How the connection is protected: starttls, tls or none.",
        choices=SECURITY),
    Key("email.ca_file", "path", None,
        "CA certificates that verify the SMTP server (starttls or tls); unset means the system trust store.",
        must_exist=True, example="/etc/hailong/smtp-ca.crt"),
    Key("email.username", "str", None, "SMTP login; unset means no login.", lo=1, example="hailong"),
    Key("email.password", "str", None, "SMTP password written inline; prefer password_file.", lo=1,
        example="change-me"),
    Key("email.password_file", "path", None, "File holding the SMTP password (trailing newline ignored).",
        example="/etc/hailong/smtp-password", must_exist=True),
    Key("email.sender", "str", "hailong@localhost", "The From address of alert e-mails.", lo=3),
    Key("email.to", "list[str]", (), "Recipients of every site's alerts, unless a site has its own.", lo=3),
    Key("email.timeout_s", "float", 15.0, "Seconds to wait for the SMTP server.", lo=0, lo_open=True),

    Key("webhook.url", "str", None, "http(s) URL that receives each alert notice as a JSON POST.",
        check=lambda v: v.startswith(("http://", "https://")), rule_text="an http:// or https:// URL",
        example="https://bridge.example.gov.vn/hailong"),
    Key("webhook.secret", "str", None, "The webhook's signing key written inline; prefer secret_file.", lo=1,
        example="change-me"),
    Key("webhook.secret_file", "path", None,
        "File holding the key that signs each POST (header X-Hailong-Signature: sha256=<HMAC-SHA256 of the body>).",
        example="/etc/hailong/webhook-secret", must_exist=True),
    Key("webhook.timeout_s", "float", 10.0, "Seconds to wait for the webhook's answer.", lo=0, lo_open=True),
]


@dataclass(frozen=True)
class AlertsSection:
    enabled: bool
    check_interval_s: float
    rules: tuple[str, ...]
    default_hours: str
    offline_after_s: float
    backlog_max: int
    backlog_age_s: float
    low_streak: int
    low_rate_below: float
    low_rate_window: int
    flagged_per_hour: int
    retry_min_s: float
    retry_max_s: float
    daily_summary: bool

    def thresholds(self, satisfied_from: int = 0) -> Thresholds:
        return Thresholds(offline_after_s=self.offline_after_s, backlog_max=self.backlog_max,
                          backlog_age_s=self.backlog_age_s, low_streak=self.low_streak,
                          low_rate_below=self.low_rate_below, low_rate_window=self.low_rate_window,
                          flagged_per_hour=self.flagged_per_hour, satisfied_from=satisfied_from,
                          rules=frozenset(self.rules))


@dataclass(frozen=True)
class EmailSection:
    host: str | None
    port: int
    security: str
    ca_file: Path | None
    username: str | None
    password: str | None = field(repr=False)  # resolved from password_file; never logged
    password_file: Path | None
    sender: str
    to: tuple[str, ...]
    timeout_s: float


@dataclass(frozen=True)
class WebhookSection:
    url: str | None
    secret: str | None = field(repr=False)  # resolved from secret_file; never logged
    secret_file: Path | None
    timeout_s: float


def check_alerts(v: dict[str, Any], problems: Problems) -> None:
    """Secrets read from their files, and the rules across keys (listed in RULES_TEXT)."""
    if v.get("alerts.retry_min_s") is not None and v.get("alerts.retry_max_s") is not None \
            and v["alerts.retry_min_s"] > v["alerts.retry_max_s"]:
        problems.append(("alerts.retry_max_s", "must not be less than alerts.retry_min_s"))
    not_both(v, "email.password", "email.password_file", problems)
    not_both(v, "webhook.secret", "webhook.secret_file", problems)
    if v.get("email.username") is not None and v.get("email.password_file") is None \
            and v.get("email.password") is None:
        problems.append(("email.password_file", "required when email.username is set (or email.password)"))
    if v.get("webhook.url") is not None and v.get("webhook.secret_file") is None and v.get("webhook.secret") is None:
        problems.append(("webhook.secret_file", "required when webhook.url is set (or webhook.secret): "
                                                "every POST is signed"))
    read_secret_file(v, "email.password_file", "email.password", problems)
    read_secret_file(v, "webhook.secret_file", "webhook.secret", problems)


RULES_TEXT = [
    "`alerts.retry_min_s` must not exceed `alerts.retry_max_s`.",
    "`email.password` and `email.password_file` cannot both be set, nor `webhook.secret` and "
    "`webhook.secret_file`; a file must be readable and non-empty.",
    "With `email.username` set, `email.password_file` (or `email.password`) is required; with `webhook.url` set, "
    "`webhook.secret_file` (or `webhook.secret`): every POST is signed.",
]

"""The alert engine in the service: a checker thread that applies the rules, a sender thread that empties the outbox.

Every `check_interval_s` the checker reads the facts from the store, evaluates the rules
(broker.alerts.rules, pure) at the engine's clock, and opens and resolves alerts; opening or
resolving queues the notices in the same transaction. The sender claims each notice that is due
(so that of several service instances only one sends it) and delivers it, one channel at a time,
and on failure leaves the notice in the outbox with a later due time (doubling from
alerts.retry_min_s to alerts.retry_max_s). Neither thread touches ingest: a channel that is down
slows nothing but its own notices. Opening and resolving are safe from several instances too: one
open alert per (rule, subject) is a unique index, and resolving is a conditional update.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from broker.alerts import channels, messages
from broker.alerts.hours import Hours, closing_time
from broker.alerts.rules import evaluate, reconcile
from common.clock import Clock, now
from common.periods import zone

__all__ = ["AlertEngine"]

log = logging.getLogger("hailong.alerts")
SEND_POLL_S = 1.0  # the sender's longest nap: a notice due after a retry waits at most this much more
# How long a notice taken by a sender is left to it (far beyond a channel's timeout); after that, e.g. when
# its instance died mid-send, any instance's sender may take it.
CLAIM_S = 300


class AlertEngine:
    def __init__(self, store, cfg, *, clock: Clock = now):
        a = cfg.alerts
        self.store, self.clock = store, clock
        self.thresholds = a.thresholds(cfg.service.satisfied_from)
        self.default_hours = Hours.from_text(a.default_hours)
        self.tz_name, self.centre = cfg.service.timezone, cfg.service.name
        self.interval, self.retry = a.check_interval_s, (a.retry_min_s, a.retry_max_s)
        self.daily_summary = a.daily_summary
        self.email, self.webhook = cfg.email, cfg.webhook
        self.checks = self.delivered = self.failures = 0
        self._stop = threading.Event()
        self._wake = threading.Event()  # the sender's: new notices are queued
        self._down_until: dict[str, float] = {}  # channel -> when to try it again
        self._threads = [threading.Thread(target=self._loop, args=(self.check_once, self.interval, self._stop),
                                          name="alerts-check", daemon=True),
                         threading.Thread(target=self._loop, args=(self.deliver_once, SEND_POLL_S, self._wake),
                                          name="alerts-send", daemon=True)]

    # ----- lifecycle -----------------------------------------------------------------------

    def start(self) -> "AlertEngine":
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the step in hand and stop; what is not delivered stays in the outbox for next time."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            if t.ident is not None:
                t.join(timeout)

    def _loop(self, step, nap: float, wake: threading.Event) -> None:
        """Run `step` every `nap` seconds, sooner when `wake` is set (stop sets both events)."""
        while not self._stop.is_set():
            try:
                step()
            except Exception:  # noqa: BLE001 - a store hiccup must not end alerting; the next round retries
                log.exception("alerts: %s failed", step.__name__)
            wake.wait(nap)
            if wake is not self._stop:
                wake.clear()

    # ----- checking ------------------------------------------------------------------------

    def hours_of_sites(self) -> dict:
        """site -> (Hours, ZoneInfo) for every site with hours or a zone of its own; others get the default."""
        sites = {s["id"]: s["tz"] for s in self.store.sites()}
        own = self.store.all_site_hours()
        out = {}
        for site in set(sites) | set(own):
            hours = Hours.from_json(own[site]["hours"]) if site in own else self.default_hours
            out[site] = (hours, zone(sites.get(site) or self.tz_name))
        return out

    def check_once(self) -> tuple[list[dict], list[dict]]:
        """One round of the rules: (alerts opened, alerts resolved)."""
        t = self.clock()
        table = self.hours_of_sites()
        default = (self.default_hours, zone(self.tz_name))
        local = datetime.fromtimestamp(t, zone(self.tz_name)).date()
        days = tuple((local + timedelta(days=d)).isoformat() for d in (-1, 0, 1))
        facts = self.store.alert_facts(days, int((t - 3600) * 1000))
        holding = evaluate(facts, t, lambda site: table.get(site, default), self.thresholds)
        opened, cleared = reconcile(((a["rule"], a["subject"]) for a in self.store.open_alerts()), holding)
        new, done = self.store.apply_alerts([(c.rule, c.subject, c.site, c.details) for c in opened], cleared,
                                            self.notices, int(t * 1000))
        for alert in new:
            log.warning("alert opened: %s %s (%s)", alert["rule"], alert["subject"], messages.describe(alert, "en"))
        for alert in done:
            log.info("alert resolved: %s %s", alert["rule"], alert["subject"])
        if self.daily_summary:
            self._summaries(t, table, default)
        self.checks += 1
        if new or done:
            self._wake.set()
        return new, done

    def recipients(self, site: str | None) -> list[str]:
        own = self.store.site_hours(site) if site else None
        return list(own["email_to"]) if own and own["email_to"] else list(self.email.to)

    def notices(self, alert: dict, kind: str) -> list[tuple[str, str | None, dict]]:
        """What opening or resolving `alert` sends, on each configured channel."""
        tz = zone(self.tz_name)
        out = []
        if self.webhook.url:
            out.append(("webhook", alert["site"], messages.webhook_body(alert, kind, tz)))
        to = self.recipients(alert["site"]) if self.email.host else []
        if to:
            subject, text = messages.email_for(alert, kind, tz, self.centre)
            out.append(("email", alert["site"], {"to": to, "subject": subject, "text": text}))
        return out

    def _summaries(self, t: float, table: dict, default) -> None:
        if not self.email.host:
            return
        for site, (hours, tz) in table.items():
            day = datetime.fromtimestamp(t, tz).date()
            closes = closing_time(hours, tz, day)
            to = self.recipients(site)
            if closes is None or t < closes or not to:
                continue
            start = datetime.combine(day, datetime.min.time(), tz).timestamp()
            alerts = [a for a in self.store.alerts("all", int(start * 1000), int(t * 1000)) if a["site"] == site]
            name = next((s["name"] for s in self.store.sites() if s["id"] == site), "") or site
            subject, text = messages.summary_email(name, day.isoformat(), alerts, self.centre)
            self.store.queue_summary(site, day.isoformat(), [("email", site, {"to": to, "subject": subject,
                                                                              "text": text})], int(t * 1000))

    # ----- sending -------------------------------------------------------------------------

    def deliver_once(self) -> int:
        """Send what is due on every channel that is not resting after a failure; returns how many were sent."""
        t = self.clock()
        sent = 0
        for notice in self.store.outbox_due(int(t * 1000)):
            channel = notice["channel"]
            if self._down_until.get(channel, 0) > t or self._stop.is_set():
                continue
            if not self.store.outbox_claim(notice["id"], int(t * 1000), int((t + CLAIM_S) * 1000)):
                continue  # another instance's sender took it since we looked
            try:
                self._send(notice)
            except channels.ChannelError as e:
                wait = min(self.retry[1], self.retry[0] * 2 ** min(notice["attempts"], 30))
                self._down_until[channel] = t + wait
                self.store.outbox_failed(notice["id"], str(e), int((t + wait) * 1000))
                self.failures += 1
                log.warning("alerts: %s notice %d not delivered (%s); next try in %.0f s",
                            channel, notice["id"], e, wait)
                continue
            self._down_until.pop(channel, None)
            self.store.outbox_sent(notice["id"], int(self.clock() * 1000))
            sent += 1
        self.delivered += sent
        return sent

    def _send(self, notice: dict) -> None:
        if notice["channel"] == "webhook":
            if not self.webhook.url:
                raise channels.ChannelError("no webhook.url configured any more")
            channels.send_webhook(self.webhook, notice["body"], notice["id"])
        elif notice["channel"] == "email":
            if not self.email.host:
                raise channels.ChannelError("no email.host configured any more")
            channels.send_email(self.email, notice["body"])
        else:
            raise channels.ChannelError(f"unknown channel {notice['channel']!r}")

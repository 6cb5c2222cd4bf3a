"""The alerts' tables (migration 6): opening hours per site, alerts with their history, the delivery outbox.

Kept apart from schema.py so the alerts' SQL lives in its own modules (broker/store/alerts*.py).
"""
from __future__ import annotations

from broker.store.dialect import Connection

__all__ = ["create"]

STATEMENTS = [
    # hours: the JSON of broker.alerts.hours.Hours.to_json; email_to: the site's recipients (JSON list).
    """CREATE TABLE site_hours (site TEXT PRIMARY KEY, hours TEXT NOT NULL, email_to TEXT NOT NULL DEFAULT '[]',
        updated_ms INTEGER, updated_by TEXT) WITHOUT ROWID""",
    """CREATE TABLE alerts (id INTEGER PRIMARY KEY, rule TEXT NOT NULL, subject TEXT NOT NULL, site TEXT,
        opened_ms INTEGER NOT NULL, resolved_ms INTEGER, acked_by TEXT, acked_ms INTEGER, details TEXT NOT NULL)""",
    # At most one open alert per (rule, subject): the database, not the engine, holds that line.
    "CREATE UNIQUE INDEX alerts_open ON alerts (rule, subject) WHERE resolved_ms IS NULL",
    "CREATE INDEX alerts_opened ON alerts (opened_ms)",
    # One row per message and channel, written in the transaction that opens or resolves the alert,
    # so a crash or a channel that is down loses nothing; sent_ms set once delivered.
    """CREATE TABLE alert_outbox (id INTEGER PRIMARY KEY, alert INTEGER, kind TEXT NOT NULL, channel TEXT NOT NULL,
        site TEXT, body TEXT NOT NULL, created_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_ms INTEGER NOT NULL, sent_ms INTEGER, last_error TEXT)""",
    "CREATE INDEX alert_outbox_due ON alert_outbox (next_ms) WHERE sent_ms IS NULL",
    # The daily summaries already queued, so a restart does not send one twice.
    "CREATE TABLE alert_summaries (site TEXT NOT NULL, day TEXT NOT NULL, PRIMARY KEY (site, day)) WITHOUT ROWID",
]


def create(db: Connection) -> None:
    for sql in STATEMENTS:
        db.execute(sql)

"""The tables of fleet updates (migration 8), apart from their queries (broker/store/releases.py) so that
the schema module can create them without importing the store's connection."""
from __future__ import annotations


def create_tables(db) -> None:
    db.execute("""CREATE TABLE releases (
        id TEXT PRIMARY KEY, version TEXT NOT NULL, python TEXT NOT NULL, arch TEXT NOT NULL,
        signature TEXT NOT NULL, files INTEGER NOT NULL, bytes INTEGER NOT NULL, added_ms INTEGER NOT NULL)""")
    db.execute("""CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY, release TEXT NOT NULL REFERENCES releases(id), target TEXT NOT NULL,
        waves INTEGER NOT NULL, threshold REAL NOT NULL, allow_downgrade INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'stopped', 'done')), wave INTEGER NOT NULL,
        reason TEXT, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL)""")
    db.execute("""CREATE TABLE rollout_devices (
        rollout INTEGER NOT NULL REFERENCES rollouts(id), device TEXT NOT NULL, wave INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('waiting', 'sent', 'committed', 'failed')), error TEXT,
        updated_ms INTEGER NOT NULL, PRIMARY KEY (rollout, device))""")

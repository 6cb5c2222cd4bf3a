"""Dead letters: what ingest refused, kept for a human to look at, within bounds.

Anyone who can publish can send garbage, so neither one message nor many may fill the disk:
a dead letter keeps at most PREFIX_BYTES of its payload, with the whole payload's size and
SHA-256 (enough to recognise it again or to match it against a capture), and the table keeps
the newest MAX_ROWS, dropping the oldest first. The totals say how many are kept
('dead_letters') and how many were dropped ('dead_letters_dropped').
"""
from __future__ import annotations

import hashlib

from broker.store.dialect import Connection

__all__ = ["MAX_ROWS", "PREFIX_BYTES", "insert", "prefix", "row"]

PREFIX_BYTES = 4096  # ample for any valid event (they are a few hundred bytes) and for seeing what garbage was
MAX_ROWS = 10_000

_INSERT = ("INSERT INTO dead_letters (received_ms, device, ledger, seq, reason, payload, size, sha256)"
           " VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
# Everything older than the MAX_ROWS-th newest row; nothing while there are fewer.
_DROP_OLDEST = ("DELETE FROM dead_letters WHERE id < (SELECT id FROM dead_letters ORDER BY id DESC"
                " LIMIT 1 OFFSET ?)")


def prefix(payload: bytes, limit: int = PREFIX_BYTES) -> bytes:
    """At most `limit` bytes of the payload, not splitting a UTF-8 character, so a text prefix stays text."""
    if len(payload) <= limit:
        return payload
    cut = limit
    while cut > limit - 3 and payload[cut] & 0xC0 == 0x80:  # a continuation byte: the character began earlier
        cut -= 1
    return payload[:cut]


def row(received_ms: int, device: str, ledger: str | None, seq: int | None, reason: str,
        payload: bytes) -> tuple:
    """A dead_letters row for `insert`: the payload's prefix, its full size and its SHA-256."""
    return (received_ms, device, ledger, seq, reason, prefix(payload), len(payload),
            hashlib.sha256(payload).hexdigest())


def insert(db: Connection, rows: list[tuple]) -> int:
    """Add the rows (from `row`), then drop the oldest beyond MAX_ROWS; returns how many were dropped."""
    db.executemany(_INSERT, rows)
    return db.execute(_DROP_OLDEST, (MAX_ROWS - 1,)).rowcount

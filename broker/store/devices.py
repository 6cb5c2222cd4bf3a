"""Devices at run time: what each counter's Pi last said about itself, and the queue numbers it prints.

A device row exists as soon as anything valid is heard from it (an event that decodes and
names its topic's device, a status, telemetry), or once it is registered; an id whose every
message was rejected is only in the dead letters. Status and telemetry commits are not fsynced one by one: the next
status repeats them, and losing the last few in a power cut is harmless.
"""
from __future__ import annotations

import json

import broker.store.dialect as dialect
from broker.store.connection import StoreBase
from common.periods import parse_day

__all__ = ["COLUMNS", "Devices", "SEEN", "device_of", "salvage_of"]

COLUMNS = ("id, registered, site, counter, first_seen_ms, last_seen_ms, online, fw, ledger, "
           "backlog, clock_ok, telemetry")

# An ingest batch saw valid events of the device between two arrival times, claiming a site and
# counter. The claim is shown only until the device is registered; it never makes events count.
SEEN = dialect.upsert(
    "devices", ("id", "site", "counter", "first_seen_ms", "last_seen_ms"), ("id",),
    f"first_seen_ms = {dialect.least('coalesce(first_seen_ms, excluded.first_seen_ms)', 'excluded.first_seen_ms')},"
    f" last_seen_ms = {dialect.greatest('coalesce(last_seen_ms, 0)', 'excluded.last_seen_ms')},"
    " site = CASE WHEN registered = 1 OR excluded.site IS NULL THEN site ELSE excluded.site END,"
    " counter = CASE WHEN registered = 1 OR excluded.site IS NULL THEN counter ELSE excluded.counter END")

_STATUS = dialect.upsert(
    "devices", ("id", "first_seen_ms", "last_seen_ms", "online", "fw", "ledger"), ("id",),
    "online = excluded.online, fw = coalesce(excluded.fw, fw), ledger = coalesce(excluded.ledger, ledger),"
    " first_seen_ms = coalesce(first_seen_ms, excluded.first_seen_ms),"
    f" last_seen_ms = {dialect.greatest('coalesce(last_seen_ms, 0)', 'coalesce(excluded.last_seen_ms, 0)')}")

_TELEMETRY = dialect.upsert(
    "devices", ("id", "first_seen_ms", "last_seen_ms", "fw", "ledger", "backlog", "clock_ok", "telemetry"), ("id",),
    "fw = coalesce(excluded.fw, fw), ledger = coalesce(excluded.ledger, ledger), backlog = excluded.backlog,"
    " clock_ok = excluded.clock_ok, telemetry = excluded.telemetry,"
    " first_seen_ms = coalesce(first_seen_ms, excluded.first_seen_ms),"
    f" last_seen_ms = {dialect.greatest('coalesce(last_seen_ms, 0)', 'excluded.last_seen_ms')}")

_TICKET = dialect.upsert("tickets", ("site", "day", "last"), ("site", "day"), "last = last + 1") + " RETURNING last"


def device_of(row: tuple) -> dict:
    """A devices row (COLUMNS) as the API shows it."""
    id_, registered, site, counter, first, last, online, fw, ledger, backlog, clock_ok, telemetry = row
    telemetry = None if telemetry is None else json.loads(telemetry)
    return {"device": id_, "registered": bool(registered), "site": site, "counter": counter,
            "first_seen_ms": first, "last_seen_ms": last, "online": None if online is None else bool(online),
            "fw": fw, "ledger": ledger, "backlog": backlog, "clock_ok": None if clock_ok is None else bool(clock_ok),
            "last_telemetry": telemetry, "salvage": salvage_of(telemetry)}


def salvage_of(telemetry: dict | None) -> dict | None:
    """Votes the device rescued from quarantined ledgers, from its last telemetry; None if it never had to.

    `unreadable` above 0 means votes were lost to a damaged SD card: someone should look at the device.
    """
    if not telemetry or "salvaged" not in telemetry:
        return None
    return {"salvaged": telemetry.get("salvaged"), "pending": telemetry.get("salvage_pending"),
            "unreadable": telemetry.get("salvage_unreadable")}


def _status_row(device: str, status: dict, at_ms: int) -> tuple:
    online = bool(status.get("online"))
    # An offline status is the broker speaking for a device that is gone:
    # it says nothing about when the device was last seen.
    return device, at_ms, at_ms if online else None, int(online), status.get("fw"), status.get("ledger")


def _telemetry_row(device: str, telemetry: dict, at_ms: int) -> tuple:
    body = json.dumps(telemetry, ensure_ascii=False, separators=(",", ":"))
    clock_ok = telemetry.get("clock_ok")
    return (device, at_ms, at_ms, telemetry.get("fw"), telemetry.get("ledger"), telemetry.get("backlog"),
            None if clock_ok is None else int(bool(clock_ok)), body)


class Devices(StoreBase):
    def devices(self) -> list[dict]:
        """Every device seen or registered, by id. Unregistered ones carry the site and counter they claim."""
        return [device_of(row) for row in self._rows(f"SELECT {COLUMNS} FROM devices ORDER BY id")]

    def device(self, device: str) -> dict | None:
        rows = self._rows(f"SELECT {COLUMNS} FROM devices WHERE id = ?", (device,))
        return device_of(rows[0]) if rows else None

    def device_status(self, device: str, status: dict, at_ms: int) -> None:
        """Record a (retained) status message: online or not, firmware, ledger."""
        self.device_health([(device, "status", status, at_ms)])

    def device_telemetry(self, device: str, telemetry: dict, at_ms: int) -> None:
        self.device_health([(device, "telemetry", telemetry, at_ms)])

    def device_health(self, reports: list[tuple[str, str, dict, int]]) -> None:
        """Statuses and telemetry, (device, "status" | "telemetry", decoded message, received ms), in order.

        One transaction for an ingest group's worth: 10,000 counters send ~170 a second, and a
        transaction each was most of the idle service's work (benchmarks/fleet.py).
        """
        if not reports:
            return
        with self._write(durable=False) as db:
            for device, kind, body, at_ms in reports:
                if kind == "status":
                    db.execute(_STATUS, _status_row(device, body, at_ms))
                elif kind == "telemetry":
                    db.execute(_TELEMETRY, _telemetry_row(device, body, at_ms))
                else:
                    raise ValueError(f"unknown device report kind {kind!r}")

    def next_ticket(self, site: str, day: str) -> int:
        """The site's next queue number for that local day: 1, 2, 3 ... durable before it is returned."""
        return self.next_tickets([(site, day)])[0]

    def next_tickets(self, site_days: list[tuple[str, str]]) -> list[int]:
        """`next_ticket` for each (site, day) in order, all in one durable transaction.

        The ingest draws a whole group's numbers at once: a transaction per NEXT, each fsynced,
        capped one service at ~350 NEXT/s (benchmarks/fleet.py).
        """
        pairs = [(site, parse_day(day)) for site, day in site_days]
        if not pairs:
            return []
        with self._write() as db:
            return [db.execute(_TICKET, (site, day, 1)).fetchone()[0] for site, day in pairs]

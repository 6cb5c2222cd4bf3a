"""Held events: stored but not counted, because the registry does not vouch for their device.

The policy (docs/store.md, "Only known devices count"): an event counts only when its device is
registered, and registered at the site and counter the event names; the registry is the truth,
not the payload. Anything else is still stored exactly once (so its device gets its ack and a
vote is not lost should an admin approve it), with `events.held` saying why, and it stays out
of the rollups and of attribution by assignment. An admin then either approves the device
(its held events are counted as if they had arrived registered) or discards them (kept for
audit, never counted). Which device is registered where is decided when a batch arrives:
registering a device later changes nothing already stored, counted or held.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

import broker.store.dialect as dialect
import broker.store.rollups as rollups
from broker.store.connection import StoreBase
from broker.store.dialect import Connection
from broker.store.errors import Ambiguous, NothingHeld
from broker.store.registry import ASSIGNED, bind_device, check_ms

__all__ = ["Held", "UNREGISTERED", "bindings", "hold_reason"]

UNREGISTERED = "unregistered"

_BINDINGS = dialect.rows_by_keys("devices", ("id",), "t.id, t.site, t.counter") + " WHERE t.registered = 1"
_TOTAL = "UPDATE totals SET n = n + ? WHERE name = ?"


def bindings(db: Connection, devices: Iterable[str]) -> dict[str, tuple[str, str]]:
    """device -> (site, counter) it is registered at, for those of `devices` that are registered."""
    keys = dialect.key_list((device,) for device in set(devices))
    return {device: (site, counter) for device, site, counter in db.execute(_BINDINGS, (keys,))}


def hold_reason(binding: tuple[str, str] | None, site: str, counter: str) -> str | None:
    """Why an event naming (site, counter) from a device with this binding is held; None: it counts."""
    if binding is None:
        return UNREGISTERED
    if binding != (site, counter):
        return f"misbound: registered at {binding[0]}/{binding[1]}"
    return None


def _pending(alias: str = "") -> str:
    """Held and not discarded: waiting for an admin."""
    return f"{alias}held IS NOT NULL AND {alias}discarded_ms IS NULL"


_HELD_BY_DEVICE = (
    "SELECT e.device, e.site, e.counter, count(*), sum(CASE WHEN e.type = 'rating' THEN 1 ELSE 0 END),"
    " min(e.received_ms), max(e.received_ms), d.registered, d.site, d.counter"
    " FROM events AS e LEFT JOIN devices AS d ON d.id = e.device"
    f" WHERE {_pending('e.')}"
    " GROUP BY e.device, e.site, e.counter, d.registered, d.site, d.counter ORDER BY e.device, e.site, e.counter")


class Held(StoreBase):
    def held_devices(self) -> list[dict]:
        """Events waiting for an admin, one row per (device, site and counter they name), by device.

        "registered" is where the registry has the device now ({"site", "counter"}), None if nowhere.
        """
        out = []
        for device, site, counter, n, ratings, first, last, registered, at_site, at_counter in self._rows(
                _HELD_BY_DEVICE):
            out.append({"device": device, "site": site, "counter": counter,
                        "registered": {"site": at_site, "counter": at_counter} if registered else None,
                        "events": n, "ratings": ratings, "first_received_ms": first, "last_received_ms": last})
        return out

    def approve_device(self, device: str, site: str | None = None, counter: str | None = None) -> dict:
        """Register the device at the site and counter its held events name, and count them: one transaction.

        site and counter (both or neither) choose among several; without them the held events must
        all name one (else Ambiguous). NothingHeld when none wait. Each event is attributed as if it
        had arrived registered: its own officer, else the counter's assignment at its time.
        Returns {"device", "site", "counter", "counted"}.
        """
        if (site is None) != (counter is None):
            raise ValueError("give both site and counter, or neither")
        with self._write() as db:
            site, counter = _the_claim(db, device, site, counter)
            bind_device(db, device, site, counter)
            counted = _count_held(db, device, site, counter)
            db.execute(_TOTAL, (-counted, "held"))
        return {"device": device, "site": site, "counter": counter, "counted": counted}

    def discard_held(self, device: str, at_ms: int, site: str | None = None, counter: str | None = None) -> dict:
        """Mark the device's held events (only those naming site/counter, if given) discarded at at_ms.

        They stay stored for audit (events lists them with "discarded_ms") and are never counted.
        NothingHeld when none wait. Returns {"device", "discarded"}.
        """
        check_ms(at_ms, "at_ms")
        where, args = f"device = ? AND {_pending()}", [device]
        for column, value in (("site", site), ("counter", counter)):
            if value is not None:
                where += f" AND {column} = ?"
                args.append(value)
        with self._write() as db:
            n = db.execute(f"UPDATE events SET discarded_ms = ? WHERE {where}", (at_ms, *args)).rowcount
            if not n:
                raise NothingHeld(f"no held events from device {device!r}" + _naming(site, counter))
            db.execute(_TOTAL, (-n, "held"))
        return {"device": device, "discarded": n}


def _naming(site: str | None, counter: str | None) -> str:
    return "" if site is None and counter is None else f" naming {site or '*'}/{counter or '*'}"


def _the_claim(db: Connection, device: str, site: str | None, counter: str | None) -> tuple[str, str]:
    """The one (site, counter) the device's waiting events name, or the one asked for if they name it."""
    claims = db.execute(f"SELECT DISTINCT site, counter FROM events WHERE device = ? AND {_pending()}"
                        " ORDER BY site, counter", (device,)).fetchall()
    if site is not None:
        claims = [claim for claim in claims if claim == (site, counter)]
    if not claims:
        raise NothingHeld(f"no held events from device {device!r}" + _naming(site, counter))
    if len(claims) > 1:
        named = ", ".join(f"{s}/{c}" for s, c in claims)
        raise Ambiguous(f"the held events of device {device!r} name several counters ({named}):"
                        " approve one site and counter at a time")
    return claims[0]


def _count_held(db: Connection, device: str, site: str, counter: str) -> int:
    """Count the device's waiting events naming (site, counter): attribution, rollups, held cleared."""
    rows = db.execute(
        "SELECT id, type, day, ts, officer, officer_source, scale, score, flagged, action FROM events"
        f" WHERE device = ? AND site = ? AND counter = ? AND {_pending()}", (device, site, counter)).fetchall()
    changes: dict[str, Counter] = {kind: Counter() for kind in rollups.KEYS}
    updates = []
    for id_, kind, day, ts, officer, source, scale, score, flagged, action in rows:
        if source != "event":  # held events are never attributed by assignment: do it now
            found = db.execute(ASSIGNED, (site, counter, ts)).fetchone()
            officer = None if found is None else found[0]
            source = "assignment" if officer is not None else None
        rollups.count(changes, kind, site, counter, officer, day, scale, score, flagged, action, +1)
        updates.append((officer, source, id_))
    db.executemany("UPDATE events SET held = NULL, officer = ?, officer_source = ? WHERE id = ?", updates)
    for kind, days in changes.items():
        rollups.apply(db, kind, days)
    return len(rows)

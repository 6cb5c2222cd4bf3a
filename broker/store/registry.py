"""The registry: sites, counters, officers, who sits at which counter when, and which device serves it.

No foreign keys on purpose: events from sites, counters and officers nobody registered yet
are stored, never refused, so nothing here checks that what it names exists. Devices are
different: only a registered device's events count (broker.store.held).
"""
from __future__ import annotations

import broker.store.dialect as dialect
from broker.store.connection import StoreBase
from broker.store.devices import COLUMNS as DEVICE_COLUMNS
from broker.store.devices import device_of
from broker.store.dialect import Connection
from broker.store.errors import InUse
from common.periods import DEFAULT_TZ, zone
from protocol.codec import MAX_INT

__all__ = ["ASSIGNED", "Registry", "bind_device", "check_ms", "names_of"]

# Who sat at (site, counter) at a time: the latest change point at or before it.
ASSIGNED = """SELECT officer FROM assignments WHERE site = ? AND counter = ? AND start_ms <= ?
    ORDER BY start_ms DESC LIMIT 1"""

_SITE = ("id", "name", "tz")
_COUNTER = ("site", "counter", "name", "device")
_OFFICER = ("id", "name", "code", "unit", "badge")

_UPSERT_SITE = dialect.upsert("sites", _SITE, ("id",), "name = excluded.name, tz = excluded.tz")
_UPSERT_COUNTER = dialect.upsert("counters", _COUNTER[:3], _COUNTER[:2], "name = excluded.name")
_UPSERT_OFFICER = dialect.upsert(
    "officers", _OFFICER, ("id",), "name = excluded.name, code = excluded.code, unit = excluded.unit,"
    " badge = coalesce(excluded.badge, badge)")
_ASSIGN = dialect.upsert("assignments", ("site", "counter", "start_ms", "officer"), ("site", "counter", "start_ms"),
                         "officer = excluded.officer")
_REGISTER = dialect.upsert("devices", ("id", "registered", "site", "counter"), ("id",),
                           "registered = 1, site = excluded.site, counter = excluded.counter")
_UNBIND = "UPDATE devices SET registered = 0 WHERE registered = 1 AND site = ? AND counter = ? AND id != ?"
_BIND = dialect.upsert("counters", _COUNTER, _COUNTER[:2], "device = excluded.device")


class Registry(StoreBase):
    # ----------------------------------------------------------------- sites

    def upsert_site(self, id: str, name: str = "", tz: str = DEFAULT_TZ) -> dict:
        """Create or replace a site. Changing tz re-buckets future events only (see docs/store.md)."""
        zone(tz)  # ValueError for an unknown zone, before anything is written
        with self._write() as db:
            db.execute(_UPSERT_SITE, (id, name, tz))
            self._zones.pop(id, None)
        return {"id": id, "name": name, "tz": tz}

    def sites(self) -> list[dict]:
        return [dict(zip(_SITE, r)) for r in self._rows("SELECT id, name, tz FROM sites ORDER BY id")]

    def site(self, site: str) -> dict | None:
        rows = self._rows("SELECT id, name, tz FROM sites WHERE id = ?", (site,))
        return dict(zip(_SITE, rows[0])) if rows else None

    def delete_site(self, site: str) -> None:
        with self._write() as db:
            (n,) = db.execute("SELECT count(*) FROM counters WHERE site = ?", (site,)).fetchone()
            if n:
                # Counters without their site would be stranded in reports; make it explicit.
                raise InUse(f"site {site!r} still has {n} counter(s): delete them first")
            db.execute("DELETE FROM sites WHERE id = ?", (site,))
        self._zones.pop(site, None)

    # -------------------------------------------------------------- counters

    def upsert_counter(self, site: str, counter: str, name: str = "", device: str | None = None) -> dict:
        """Create or rename a counter; a device given here is registered there (None: binding unchanged)."""
        with self._write() as db:
            db.execute(_UPSERT_COUNTER, (site, counter, name))
            if device is not None:
                bind_device(db, device, site, counter)
            row = db.execute("SELECT device FROM counters WHERE site = ? AND counter = ?", (site, counter)).fetchone()
        return {"site": site, "counter": counter, "name": name, "device": row[0]}

    def counters(self, site: str | None = None) -> list[dict]:
        sql = "SELECT site, counter, name, device FROM counters"
        rows = self._rows(sql + (" WHERE site = ?" if site is not None else "") + " ORDER BY site, counter",
                          (site,) if site is not None else ())
        return [dict(zip(_COUNTER, r)) for r in rows]

    def counter(self, site: str, counter: str) -> dict | None:
        rows = self._rows("SELECT site, counter, name, device FROM counters WHERE site = ? AND counter = ?",
                          (site, counter))
        return dict(zip(_COUNTER, rows[0])) if rows else None

    def delete_counter(self, site: str, counter: str) -> None:
        # Events and assignment history stay: they are facts about the past.
        with self._write() as db:
            db.execute("DELETE FROM counters WHERE site = ? AND counter = ?", (site, counter))

    # -------------------------------------------------------------- officers

    def upsert_officer(self, id: str, name: str, code: str = "", unit: str = "", badge: str | None = None) -> dict:
        """Create or update an officer; badge None leaves the badge as it was.

        A badge belongs to one person: giving it to this officer takes it from
        whoever had it (cards are reissued).
        """
        badge = _badge(badge)
        with self._write() as db:
            if badge is not None:
                db.execute("UPDATE officers SET badge = NULL WHERE badge = ? AND id != ?", (badge, id))
            db.execute(_UPSERT_OFFICER, (id, name, code, unit, badge))
            row = db.execute("SELECT id, name, code, unit, badge FROM officers WHERE id = ?", (id,)).fetchone()
        return dict(zip(_OFFICER, row))

    def officers(self) -> list[dict]:
        rows = self._rows("SELECT id, name, code, unit, badge FROM officers ORDER BY id")
        return [dict(zip(_OFFICER, r)) for r in rows]

    def officer(self, officer: str) -> dict | None:
        rows = self._rows("SELECT id, name, code, unit, badge FROM officers WHERE id = ?", (officer,))
        return dict(zip(_OFFICER, rows[0])) if rows else None

    def officer_by_badge(self, uid: str) -> dict | None:
        rows = self._rows("SELECT id, name, code, unit, badge FROM officers WHERE badge = ?", (_badge(uid),))
        return dict(zip(_OFFICER, rows[0])) if rows else None

    def delete_officer(self, officer: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM officers WHERE id = ?", (officer,))

    # ------------------------------------------------------ who sits where

    def assign(self, site: str, counter: str, officer: str | None, at_ms: int) -> dict:
        """From at_ms on, `officer` (None: nobody) sits at the counter, until the next change.

        The history is a list of change points, so this closes whatever assignment
        was open at at_ms. A change recorded late does not re-attribute events
        already stored (docs/store.md).
        """
        check_ms(at_ms, "at_ms")
        with self._write() as db:
            db.execute(_ASSIGN, (site, counter, at_ms, officer))
            nxt = db.execute(
                "SELECT min(start_ms) FROM assignments WHERE site = ? AND counter = ? AND start_ms > ?",
                (site, counter, at_ms),
            ).fetchone()[0]
        return {"site": site, "counter": counter, "officer": officer, "start_ms": at_ms, "end_ms": nxt}

    def assignment_at(self, site: str, counter: str, at_ms: int) -> str | None:
        rows = self._rows(ASSIGNED, (site, counter, at_ms))
        return rows[0][0] if rows else None

    # ------------------------------------------- which device serves a counter

    def register_device(self, device: str, site: str, counter: str) -> dict:
        """The device serves (site, counter) from now on: its events naming it count from the next batch.

        The device registered there before is unregistered (one device per counter, `bind_device`).
        Events already stored keep what they were: counted ones stay where they were counted, held
        ones stay held until `approve_device` counts them.
        """
        with self._write() as db:
            bind_device(db, device, site, counter)
            row = db.execute(f"SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?", (device,)).fetchone()
        return device_of(row)

    def device_at(self, site: str, counter: str) -> str | None:
        """The device registered at the counter, or None: what its events claim never makes it one.

        Officer assignments (names included) are published to this device alone.
        """
        rows = self._rows("SELECT id FROM devices WHERE registered = 1 AND site = ? AND counter = ?",
                          (site, counter))
        # bind_device keeps it to one; migration 4 made it so for stores that had several.
        return rows[0][0] if len(rows) == 1 else None


def names_of(db: Connection, group: str) -> dict[tuple, str]:
    """Registry names keyed like satisfaction's groups ("officer", "counter", "site")."""
    sql = {"officer": "SELECT id, name FROM officers", "counter": "SELECT site, counter, name FROM counters",
           "site": "SELECT id, name FROM sites"}[group]
    return {row[:-1]: row[-1] for row in db.execute(sql)}


def bind_device(db: Connection, device: str, site: str, counter: str) -> None:
    """Register the device at (site, counter), in the caller's transaction: one device per counter.

    Whichever device was registered there is unregistered, so its later events are held (a
    replaced Pi that keeps sending, or someone using its credentials, must not count twice).
    What it sent before stays counted.
    """
    db.execute(_UNBIND, (site, counter, device))
    db.execute(_REGISTER, (device, 1, site, counter))
    # ... and one counter per device.
    db.execute("UPDATE counters SET device = NULL WHERE device = ?", (device,))
    db.execute(_BIND, (site, counter, "", device))


def _badge(uid: str | None) -> str | None:
    # Readers disagree on hex case; the contract allows either.
    return None if uid is None else uid.strip().upper()


def check_ms(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INT:
        raise ValueError(f"{name} must be an integer of milliseconds since the epoch, got {value!r}")

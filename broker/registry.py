"""Registry reads and deletes for the store: sites, counters, officers, which device serves a counter."""
from __future__ import annotations


class InUse(LookupError):
    """Deleting this would strand other records (e.g. a site that still has counters)."""


class RegistryQueries:
    """Lists, single reads and deletes of sites, counters and officers (mixed into Store).

    Runs on the store's own read/write transactions and locks.
    """

    def _rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._read() as db:
            return db.execute(sql, args).fetchall()

    def sites(self) -> list[dict]:
        return [dict(zip(("id", "name", "tz"), r)) for r in self._rows("SELECT id, name, tz FROM sites ORDER BY id")]

    def site(self, site: str) -> dict | None:
        rows = self._rows("SELECT id, name, tz FROM sites WHERE id = ?", (site,))
        return dict(zip(("id", "name", "tz"), rows[0])) if rows else None

    def counters(self, site: str | None = None) -> list[dict]:
        sql = "SELECT site, counter, name, device FROM counters"
        rows = self._rows(sql + (" WHERE site = ?" if site is not None else "") + " ORDER BY site, counter",
                          (site,) if site is not None else ())
        return [dict(zip(("site", "counter", "name", "device"), r)) for r in rows]

    def counter(self, site: str, counter: str) -> dict | None:
        rows = self._rows("SELECT site, counter, name, device FROM counters WHERE site = ? AND counter = ?",
                          (site, counter))
        return dict(zip(("site", "counter", "name", "device"), rows[0])) if rows else None

    def officers(self) -> list[dict]:
        rows = self._rows("SELECT id, name, code, unit, badge FROM officers ORDER BY id")
        return [dict(zip(("id", "name", "code", "unit", "badge"), r)) for r in rows]

    def officer(self, officer: str) -> dict | None:
        rows = self._rows("SELECT id, name, code, unit, badge FROM officers WHERE id = ?", (officer,))
        return dict(zip(("id", "name", "code", "unit", "badge"), rows[0])) if rows else None

    def delete_site(self, site: str) -> None:
        with self._write() as db:
            (n,) = db.execute("SELECT count(*) FROM counters WHERE site = ?", (site,)).fetchone()
            if n:
                # Counters without their site would be stranded in reports; make it explicit.
                raise InUse(f"site {site!r} still has {n} counter(s): delete them first")
            db.execute("DELETE FROM sites WHERE id = ?", (site,))
        self._zones.pop(site, None)

    def delete_counter(self, site: str, counter: str) -> None:
        # Events and assignment history stay: they are facts about the past.
        with self._write() as db:
            db.execute("DELETE FROM counters WHERE site = ? AND counter = ?", (site, counter))

    def delete_officer(self, officer: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM officers WHERE id = ?", (officer,))

    def device(self, device: str) -> dict | None:
        return next((d for d in self.devices() if d["device"] == device), None)

    def device_at(self, site: str, counter: str) -> str | None:
        """The device serving a counter: the registry's binding, else the one device that claims it."""
        row = self.counter(site, counter)
        if row is not None and row["device"]:
            return row["device"]
        claims = [d for d in self.devices() if d["site"] == site and d["counter"] == counter]
        registered = [d for d in claims if d["registered"]]
        if registered:
            return registered[0]["device"]
        return claims[0]["device"] if len(claims) == 1 else None

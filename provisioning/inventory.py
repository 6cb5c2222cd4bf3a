"""The technician's inventory: sites, devices and the service account, in one TinyDB file.

Secrets are not stored in plain text: only Mosquitto password hashes. The exception is each
device's provisioning key: the counter's agent checks it on the serial console, so the
technician's tool must be able to present it again later (and to write it into a new
bundle); it is useless without physical access to the counter's serial port.

Every write replaces the whole file atomically (temp file, fsync, rename, fsync of the
directory), so a crash or power cut leaves either the old inventory or the new one.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from common.fsutil import atomic_write
from common.ownership import OwnershipError, claim
from tinydb import Query, TinyDB
from tinydb.storages import Storage

INVENTORY_FILE = "inventory.json"


def default_inventory_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hailong"


class AtomicJSONStorage(Storage):
    """TinyDB storage that rewrites the whole JSON file atomically on every write."""

    def __init__(self, path: str | Path, **_: Any):
        self.path = Path(path)

    def read(self) -> dict | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return json.loads(text) if text.strip() else None

    def write(self, data: dict) -> None:
        atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8"))

    def close(self) -> None:
        pass


class InventoryError(Exception):
    """A request the inventory cannot satisfy (unknown site, duplicate device...)."""


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def broker_list(site: dict) -> list[str]:
    """The site's brokers as "host:port", its main one first (docs/brokers.md)."""
    host = site["broker_host"]
    first = f"[{host}]:{site['port']}" if ":" in host else f"{host}:{site['port']}"
    return [first, *site.get("also_brokers", [])]  # rows from before the key have none


class Inventory:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        try:  # `sudo hailong provision` on a technician's inventory would leave files they cannot write
            claim(self.dir, command="hailong provision", switch=False, service=False)
        except OwnershipError as e:
            raise InventoryError(str(e)) from None
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = TinyDB(self.dir / INVENTORY_FILE, storage=AtomicJSONStorage)
        self.sites = self.db.table("sites")
        self.devices = self.db.table("devices")
        self.accounts = self.db.table("accounts")
        self.selftests = self.db.table("selftests")

    def close(self) -> None:
        self.db.close()

    # --- sites -------------------------------------------------------------------------
    def add_site(self, site: str, broker_host: str, port: int = 1883, tls: bool = False,
                 ca_file: str | None = None, prefix: str = "hailong/v1", also_brokers: list[str] = ()) -> dict:
        row = {"id": site, "broker_host": broker_host, "port": port, "tls": tls,
               "ca_file": ca_file, "prefix": prefix, "also_brokers": list(also_brokers), "created": now()}
        q = Query()
        if self.sites.get(q.id == site):
            self.sites.update(row | {"updated": now()}, q.id == site)
        else:
            self.sites.insert(row)
        return self.site(site)

    def site(self, site: str) -> dict:
        row = self.sites.get(Query().id == site)
        if row is None:
            known = ", ".join(sorted(r["id"] for r in self.sites.all())) or "none yet"
            raise InventoryError(f"unknown site {site!r} (known: {known}); add it with `provision site add`")
        return dict(row)

    # --- devices -----------------------------------------------------------------------
    def add_device(self, device_id: str, site: str, counter: str, password_hash: str,
                   provisioning_key: str) -> dict:
        self.site(site)
        q = Query()
        old = self.devices.get(q.id == device_id)
        if old is not None and not old.get("revoked"):
            raise InventoryError(f"device {device_id!r} already exists (site {old['site']}, counter "
                                 f"{old['counter']}); use `provision device rotate` or `bundle`")
        clash = self.devices.get((q.site == site) & (q.counter == counter) & (q.revoked == False))  # noqa: E712
        if clash is not None:
            raise InventoryError(f"counter {counter} of site {site} already has device {clash['id']!r}; "
                                 "revoke it first")
        row = {"id": device_id, "site": site, "counter": counter, "password_hash": password_hash,
               "provisioning_key": provisioning_key, "revoked": False, "created": now(),
               "rotated": None, "revoked_at": None}
        if old is not None:
            self.devices.update(row, q.id == device_id)
        else:
            self.devices.insert(row)
        return self.device(device_id)

    def device(self, device_id: str) -> dict:
        row = self.devices.get(Query().id == device_id)
        if row is None:
            raise InventoryError(f"unknown device {device_id!r}")
        return dict(row)

    def active_device(self, device_id: str) -> dict:
        row = self.device(device_id)
        if row["revoked"]:
            raise InventoryError(f"device {device_id!r} is revoked (at {row['revoked_at']}); "
                                 "add it again with `provision device add`")
        return row

    def set_password_hash(self, device_id: str, password_hash: str) -> None:
        self.active_device(device_id)
        self.devices.update({"password_hash": password_hash, "rotated": now()}, Query().id == device_id)

    def revoke(self, device_id: str) -> None:
        self.active_device(device_id)
        self.devices.update({"revoked": True, "revoked_at": now()}, Query().id == device_id)

    def active_devices(self) -> list[dict]:
        return sorted((dict(r) for r in self.devices.all() if not r["revoked"]), key=lambda r: r["id"])

    def record_selftest(self, result: dict) -> None:
        """Keep every self-test table (device_id, at_ms, passed, checks): proof of what was checked on site."""
        self.selftests.insert(dict(result))

    def selftests_of(self, device_id: str) -> list[dict]:
        return sorted((dict(r) for r in self.selftests.all() if r.get("device_id") == device_id),
                      key=lambda r: r["at_ms"])

    # --- the service's MQTT account ----------------------------------------------------
    def service_account(self) -> dict | None:
        row = self.accounts.get(Query().role == "service")
        return dict(row) if row else None

    def set_service_account(self, username: str, password_hash: str) -> None:
        q = Query()
        row = {"role": "service", "username": username, "password_hash": password_hash}
        if self.accounts.get(q.role == "service"):
            self.accounts.update(row | {"rotated": now()}, q.role == "service")
        else:
            self.accounts.insert(row | {"created": now(), "rotated": None})

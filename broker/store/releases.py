"""Fleet updates: published releases, rollouts and each device's part in one (docs/updates.md).

The release files themselves live on disk (service.data_dir/releases/<id>/); the store keeps what
the service must not lose track of: which releases exist, which rollout targets whom in which wave,
and how each device fared.
"""
from __future__ import annotations

import json

from broker.store.connection import StoreBase

__all__ = ["Releases"]


_ROLLOUT = "id, release, target, waves, threshold, allow_downgrade, state, wave, reason, created_ms, updated_ms"


def _rollout(row) -> dict:
    keys = [k.strip() for k in _ROLLOUT.split(",")]
    r = dict(zip(keys, row))
    r["target"], r["allow_downgrade"] = json.loads(r["target"]), bool(r["allow_downgrade"])
    return r


class Releases(StoreBase):
    def add_release(self, rid: str, version: str, python: str, arch: str, signature: str, files: int,
                    size: int, at_ms: int) -> None:
        with self._write() as db:
            db.execute("INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                       "signature = excluded.signature, files = excluded.files, bytes = excluded.bytes, "
                       "added_ms = excluded.added_ms", (rid, version, python, arch, signature, files, size, at_ms))

    def releases(self) -> list[dict]:
        keys = ("id", "version", "python", "arch", "signature", "files", "bytes", "added_ms")
        return [dict(zip(keys, r)) for r in self._rows(f"SELECT {', '.join(keys)} FROM releases ORDER BY added_ms")]

    def release(self, rid: str) -> dict | None:
        return next((r for r in self.releases() if r["id"] == rid), None)

    def add_rollout(self, release: str, target: dict, waves: int, threshold: float, allow_downgrade: bool,
                    members: dict[str, int], at_ms: int) -> int:
        """A running rollout of `release` over `members` ({device: wave})."""
        with self._write() as db:
            # The id column left out (not NULL) and RETURNING: PostgreSQL's identity column wants both.
            (rid,) = db.execute(f"INSERT INTO rollouts ({_ROLLOUT.removeprefix('id, ')}) VALUES"
                                " (?, ?, ?, ?, ?, 'running', 0, NULL, ?, ?) RETURNING id",
                                (release, json.dumps(target), waves, threshold, int(allow_downgrade), at_ms,
                                 at_ms)).fetchone()
            db.executemany("INSERT INTO rollout_devices VALUES (?, ?, ?, 'waiting', NULL, ?)",
                           [(rid, d, w, at_ms) for d, w in sorted(members.items())])
        return rid

    def rollouts(self, running_only: bool = False) -> list[dict]:
        where = " WHERE state = 'running'" if running_only else ""
        return [_rollout(r) for r in self._rows(f"SELECT {_ROLLOUT} FROM rollouts{where} ORDER BY id")]

    def rollout(self, rollout_id: int) -> dict | None:
        rows = self._rows(f"SELECT {_ROLLOUT} FROM rollouts WHERE id = ?", (rollout_id,))
        if not rows:
            return None
        r = _rollout(rows[0])
        r["devices"] = [dict(zip(("device", "wave", "state", "error", "updated_ms"), d)) for d in self._rows(
            "SELECT device, wave, state, error, updated_ms FROM rollout_devices WHERE rollout = ? ORDER BY wave, device",
            (rollout_id,))]
        return r

    def save_rollout_step(self, rollout_id: int, *, state: str, wave: int, reason: str | None,
                          devices: dict[str, tuple[str, str | None]], at_ms: int,
                          if_updated_ms: int | None = None) -> bool:
        """One step of the rollout engine, in one transaction: its new wave and state, and each changed device.

        With `if_updated_ms`, only if the rollout is still running and unchanged since that step (False
        otherwise, and nothing is written): of several service instances stepping one rollout, or a step
        and an operator's stop, the first one stands.
        """
        with self._write() as db:
            guard, args = ("", ()) if if_updated_ms is None else (" AND state = 'running' AND updated_ms = ?",
                                                                 (if_updated_ms,))
            if db.execute(f"UPDATE rollouts SET state = ?, wave = ?, reason = ?, updated_ms = ? WHERE id = ?{guard}"
                          " RETURNING id", (state, wave, reason, at_ms, rollout_id, *args)).fetchone() is None:
                return False
            db.executemany("UPDATE rollout_devices SET state = ?, error = ?, updated_ms = ? WHERE rollout = ? "
                           "AND device = ?", [(s, e, at_ms, rollout_id, d) for d, (s, e) in devices.items()])
        return True

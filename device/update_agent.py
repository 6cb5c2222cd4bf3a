"""The running counter's side of fleet updates: takes `update` commands, fetches and installs in the
background, switches at an idle moment, and proves (or disproves) a new version's health.

The runtime calls, all on its own thread except the background job: `offer(cmd)` for an update
command, `online`/`stored`/`acked` as they happen, and `tick(now, idle)`, which returns "restart" when
the runtime must exit with EXIT_RESTART so the service manager starts the next version. Each state
change is saved (atomically, with fsync) before the link moves and before the restart.
"""
from __future__ import annotations

import logging
import shutil
import ssl
import threading
from pathlib import Path
from typing import Callable

from common import release as rel
from device import releases, updater
from device.updater import Health, State

log = logging.getLogger("hailong.update")


class Updates:
    def __init__(self, cfg, *, running: str, now: float, emit: Callable[[dict], None] = lambda r: None,
                 fetch=releases.fetch_release, install=releases.install_release,
                 fetch_manifest=releases.fetch_manifest, target=releases.this_target) -> None:
        self.cfg, self.running, self.emit = cfg, running, emit
        self.data_dir = Path(cfg.device.data_dir)
        self._fetch, self._install, self._fetch_manifest, self._target = fetch, install, fetch_manifest, target
        self.state = updater.load_state(self.data_dir)
        u = cfg.update
        self.health = (Health(now, u.health_timeout_s, u.quiet_s) if self.state.pending == running else None)
        if self.health is not None:
            self.health.ledger_ok = True  # the runtime opened it and read its backlog before creating us
        self.staged: tuple[str, bool] | None = None  # (version, allowed downgrade)
        self._job: threading.Thread | None = None
        self._job_version: str | None = None
        self.status: dict = dict(self.state.outcome or {})
        if self.health is not None:
            self.status = {"version": running, "state": "pending", "error": None}

    # -- inputs -------------------------------------------------------------------------------

    def offer(self, cmd: dict) -> None:
        version = cmd["version"]
        if version == self.running:
            return  # a command sent again after the update took: nothing to do, nothing to report
        last = self.state.outcome or {}
        if last.get("version") == version and last.get("state") == "rolled_back":
            # It failed here once; trying again would only repeat the outage. A fix is a new version.
            self._set(version, "refused", f"this counter rolled back from {version} already: {last.get('error')}")
            return
        if self._job is not None and self._job.is_alive():
            log.info("update %s ignored: %s is still being fetched", version, self._job_version)
            return
        if self.health is not None:
            log.info("update %s ignored: %s is still on probation", version, self.running)
            return
        if self.staged is not None and self.staged[0] == version:
            return
        self._job_version = version
        self._job = threading.Thread(target=self._work, args=(cmd,), name=f"update-{version}", daemon=True)
        self._job.start()

    def online(self, up: bool, now: float) -> None:
        if self.health is not None:
            self.health.online(up, now)

    def stored(self, seq: int) -> None:
        if self.health is not None:
            self.health.stored(seq)

    def acked(self, seqs) -> None:
        if self.health is not None:
            self.health.acked_seqs(seqs)

    # -- background job -----------------------------------------------------------------------

    def _set(self, version: str, state: str, error: str | None = None) -> None:
        if error is not None:
            # pip's output has newlines and may be long: telemetry text allows neither.
            error = "".join(c if c.isprintable() else " " for c in " ".join(error.split()))[:1000]
        self.status = {"version": version, "state": state, "error": error}
        self.emit({"update": dict(self.status)})

    def _work(self, cmd: dict) -> None:
        version = cmd["version"]
        try:
            manifest = self._verified(cmd)
            folder = updater.releases_dir(self.data_dir) / version
            self._set(version, "downloading")
            self._fetch(folder, cmd["url"], manifest, auth=self._auth(), context=self._tls())
            self._set(version, "installing")
            self._install(folder, manifest)
            self.staged = (version, bool(cmd.get("allow_downgrade")))
            self._set(version, "staged")
        except rel.ReleaseError as e:
            log.error("update %s refused: %s", version, e)
            self._set(version, "refused", f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - network, disk, pip: report and wait for the next command
            log.error("update %s failed: %s", version, e)
            self._set(version, "failed", f"{type(e).__name__}: {e}")

    def _verified(self, cmd: dict) -> dict:
        key = self.cfg.update.public_key
        if key is None:
            raise rel.WrongKey("this counter has no update.public_key: it accepts no release")
        data = self._fetch_manifest(cmd["url"], auth=self._auth(), context=self._tls())
        python, arch = self._target()
        manifest = rel.verify_manifest(data, cmd["signature"].encode(), rel.read_key(key), running=self.running,
                                       python=python, arch=arch, allow_downgrade=bool(cmd.get("allow_downgrade")))
        if manifest["version"] != cmd["version"]:
            raise rel.BadManifest(f"the command names {cmd['version']}, the signed manifest {manifest['version']}")
        folder = updater.releases_dir(self.data_dir) / manifest["version"]
        if folder.exists() and not (folder / updater.COMPLETE).is_file():
            shutil.rmtree(folder / "venv", ignore_errors=True)  # half-installed: its wheels are reused
        folder.mkdir(parents=True, exist_ok=True)
        (folder / rel.MANIFEST).write_bytes(data)
        (folder / rel.SIGNATURE).write_text(cmd["signature"])
        return manifest

    def _auth(self) -> tuple[str, str] | None:
        m = self.cfg.mqtt
        return (m.username, m.password) if m.password else None

    def _tls(self):
        ca = self.cfg.mqtt.ca_file
        return ssl.create_default_context(cafile=str(ca)) if ca else None

    # -- decisions ------------------------------------------------------------------------------

    def tick(self, now: float, idle: bool) -> str | None:
        try:
            return self._decide(now, idle)
        except OSError as e:  # a full or failing card: keep counting on this version, try again next tick
            log.error("update step failed: %s (will retry)", e)
            return None

    def _decide(self, now: float, idle: bool) -> str | None:
        if self.health is not None:
            verdict = self.health.verdict(now)
            if verdict == "commit":
                self._save(updater.commit(self.state))
                self.health = None
                self._set(self.running, "committed")
                log.info("version %s is healthy: committed", self.running)
            elif verdict == "rollback":
                why = self.health.why_not()
                self._save(updater.roll_back(self.state, why))
                updater.point_current(self.data_dir, self.state.committed)
                self._set(self.running, "rolled_back", why)
                log.error("version %s %s: switching back to %s", self.running, why, self.state.committed or "factory")
                return "restart"
            return None
        if self.staged is not None and idle:
            version = self.staged[0]
            self._save(updater.switch_to(self.state, version))
            updater.point_current(self.data_dir, version)
            log.info("switching from %s to %s", self.running, version)
            self.staged = None
            return "restart"
        return None

    def _save(self, state: State) -> None:
        updater.save_state(self.data_dir, state)
        self.state = state

    def telemetry(self) -> dict | None:
        return dict(self.status) if self.status else None

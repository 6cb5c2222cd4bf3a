"""Fleet-update test parts: a counter restarted as systemd would, and the real service's parts."""
from __future__ import annotations

import contextlib
import sys
import threading

from broker.api import ApiServer, create_app
from broker.auth import Auth
from broker.config import config_from_dict
from broker.ingest import Ingest, IngestSettings
from broker.store import Store
from common.mqtt_access import hash_password
from tests.mosquitto import free_port
from tests.support import DeviceProcess


class Supervisor:
    """Starts the counter through `device boot` and starts it again whenever it exits, as systemd does."""

    def __init__(self, config, max_starts: int = 8, argv: list[str] | None = None):
        self.config, self.max_starts = config, max_starts
        self.argv = argv or [sys.executable, "-m", "hailong.cli", "device", "boot", "--simulate", "--config",
                             str(config)]
        self.procs: list[DeviceProcess] = []
        self.exits: list[int] = []
        self.changed = threading.Condition()
        self._stop = False
        self._start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _start(self) -> None:
        proc = DeviceProcess(None, argv=self.argv)
        with self.changed:
            self.procs.append(proc)
            self.changed.notify_all()

    def _watch(self) -> None:
        while True:
            rc = self.procs[-1].proc.wait()
            with self.changed:
                self.exits.append(rc)
                self.changed.notify_all()
                if self._stop or len(self.procs) >= self.max_starts:
                    return
            self._start()

    @property
    def current(self) -> DeviceProcess:
        return self.procs[-1]

    def wait_starts(self, n: int, timeout: float = 60) -> DeviceProcess:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.procs) >= n, timeout), f"{len(self.procs)} starts, not {n}"
        return self.procs[n - 1]

    def all_stored(self) -> list[dict]:
        return [e for p in self.procs for e in p.stored()]

    def close(self) -> None:
        self._stop = True
        for p in self.procs:
            if p.proc.poll() is None:
                p.quit()


@contextlib.contextmanager
def fleet_service(tmp_path, mosquitto, accounts: dict[str, str]):
    """(cfg, store, ingest) of a real service on `mosquitto`, its HTTP API serving releases to `accounts`."""
    passwd = tmp_path / "passwd"
    passwd.write_text("".join(f"{user}:{hash_password(pw)}\n" for user, pw in accounts.items()))
    cfg = config_from_dict({"mqtt": {"embedded": False, "host": mosquitto.host, "port": mosquitto.port,
                                     "passwd_file": str(passwd)},
                            "service": {"data_dir": str(tmp_path / "svc")},
                            "store": {"url": f"sqlite:///{tmp_path / 'svc' / 'hailong.db'}"},
                            "http": {"port": free_port()}})
    store = Store.open(cfg.store.url)
    auth = Auth.from_config(cfg)
    ingest = Ingest(store, IngestSettings(host=mosquitto.host, port=mosquitto.port, batch_wait_ms=5)).start()
    assert ingest.connected.wait(10)
    server = ApiServer(create_app(store=store, ingest=ingest, auth=auth, cfg=cfg), cfg.http.host, cfg.http.port)
    server.start()
    try:
        yield cfg, store, ingest
    finally:
        server.stop()
        ingest.stop()
        auth.close()
        store.close()

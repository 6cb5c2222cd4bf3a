"""The real central service for benchmarks/fleet.py: its config, `hailong broker run` as one process or as
several instances on one shared subscription (docs/instances.md), their /metrics, and a throw-away PostgreSQL."""
from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def service_config(*, work: Path, mqtt_port: int, http_port: int, store_url: str,
                   password: str | None, overrides: list[str]) -> dict:
    """The service's config as sections of keys; `overrides` are KEY=VALUE with a TOML value,
    e.g. `mqtt.shared_group="fleet"` or `alerts.enabled=false`, applied last."""
    cfg: dict[str, dict] = {
        "service": {"data_dir": str(work / "service")},
        "mqtt": {"embedded": False, "host": "127.0.0.1", "port": mqtt_port, "username": "hailong-service"},
        "store": {"url": store_url},
        "http": {"port": http_port},
    }
    if password is not None:
        cfg["mqtt"]["password"] = password
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"--service-set wants SECTION.KEY=TOML-VALUE, got {item!r}")
        try:
            cfg.setdefault(section, {})[name] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"--service-set {item!r}: the value is not TOML ({e}); quote strings") from None
    return cfg


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(cfg: dict) -> str:
    lines = []
    for section, keys in cfg.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def instance_configs(base: dict, n: int, work: Path, http_ports: list[int]) -> list[dict]:
    """`base` as it is for one instance; for n > 1, n instances as docs/instances.md sets them up: one
    shared group, a client id and data dir each, one session secret, the same store."""
    if n == 1:
        return [base]
    secret = work / "session-secret"
    secret.write_text(secrets.token_hex(32))
    secret.chmod(0o600)
    configs = []
    for i, port in enumerate(http_ports, 1):
        cfg = {section: dict(keys) for section, keys in base.items()}
        cfg["service"]["data_dir"] = str(work / f"service-{i}")
        cfg["mqtt"].setdefault("shared_group", "fleet")
        cfg["mqtt"]["client_id"] = f"hailong-service-{i}"
        cfg["http"].update(port=port, session_secret_file=str(secret))
        configs.append(cfg)
    return configs


def metrics_of(http_port: int, token: str) -> dict[str, float]:
    """One instance's /metrics: its own ingest counters since it started (and the store's totals)."""
    import httpx

    r = httpx.get(f"http://127.0.0.1:{http_port}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    r.raise_for_status()
    return {m[1]: float(m[2]) for m in re.finditer(r"^(hailong_\w+) (\S+)$", r.text, re.M)}


def viewer_token(store_url: str) -> str:
    """A viewer API token for /metrics, in the auth tables beside the store."""
    from broker.auth import Auth
    from broker.store.connection import path_of

    where = store_url if store_url.startswith(("postgresql://", "postgres://")) else path_of(store_url)
    with Auth(where) as auth:
        return auth.create_token("viewer", "fleet-benchmark")


def throwaway_postgres():
    """A PostgreSQL cluster of Debian's packages on a free loopback port (tests/postgres.py) with its
    default durability: fsync and synchronous_commit on, as a province would run it. (cluster, URL)."""
    from tests.postgres import PostgresCluster, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (/usr/lib/postgresql/*/bin): `make system-deps`, "
                         "or give --store-url")
    cluster = PostgresCluster(bin_dir, durable=True).start()
    try:
        return cluster, cluster.create_database(migrated=False)
    except BaseException:
        cluster.stop()
        raise


def postmaster_pid(cluster) -> int:
    """The PostgreSQL server's main process, from its data directory's postmaster.pid."""
    return int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])


class ServiceProcess:
    """`hailong broker run --config ...`, ready when /healthz says store and ingest are up."""

    def __init__(self, work: Path, cfg: dict, name: str = "service"):
        self.name = name
        self.cfg = cfg
        self.cfg_path = work / f"{name}.toml"
        self.cfg_path.write_text(to_toml(cfg))
        self.http_port = cfg["http"]["port"]
        self.log = work / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "ServiceProcess":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hailong.cli", "broker", "--log-level", "WARNING", "run",
                 "--config", str(self.cfg_path)], cwd=ROOT, stdout=log, stderr=log)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"http://127.0.0.1:{self.http_port}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # /healthz is the service's only readiness signal
        raise RuntimeError(f"the service did not become healthy:\n{self.log.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

"""The real central service for benchmarks/fleet.py: its config, and `hailong broker run` as a process."""
from __future__ import annotations

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


class ServiceProcess:
    """`hailong broker run --config ...`, ready when /healthz says store and ingest are up."""

    def __init__(self, work: Path, cfg: dict):
        self.cfg_path = work / "broker.toml"
        self.cfg_path.write_text(to_toml(cfg))
        self.http_port = cfg["http"]["port"]
        self.log = work / "service.log"
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

"""The whole service on a PostgreSQL store: the real `hailong broker run` with a real Mosquitto and the
real counter firmware, users and tokens made with `hailong broker user add` / `token create`, an API call
and a dashboard page; and the one-line errors for a store that cannot be reached or a bad URL."""
from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from broker.store import Store
from tests.mosquitto import free_port
from tests.support import ROOT
from tests.test_broker_ingest import WIDE, all_acked, counters, register_counters, start_service  # noqa: F401
from tests.test_web_dashboard import post_login

pytest.importorskip("psycopg")


def hailong(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hailong.cli", "broker", *args], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def write_config(tmp_path, url: str, mqtt_port: int) -> tuple:
    cfg = tmp_path / "broker.toml"
    http_port = free_port()
    cfg.write_text("[mqtt]\nembedded = false\n"
                   f'host = "127.0.0.1"\nport = {mqtt_port}\nbatch_wait_ms = 5\n'
                   f'[store]\nurl = "{url}"\n[service]\ndata_dir = "{tmp_path / "svc"}"\n'
                   f"[http]\nport = {http_port}\n")
    return cfg, http_port


def test_the_service_counts_serves_the_api_and_the_dashboard_on_postgresql(tmp_path, mosquitto, counters, pg_url):
    cfg, http_port = write_config(tmp_path, pg_url, mosquitto.port)
    with Store.open(pg_url) as store:
        register_counters(store, 1)
    r = hailong("user", "add", "lan", "--role", "viewer", "--password-stdin", "--config", str(cfg),
                stdin="a passphrase for lan\n")
    assert r.returncode == 0, r.stderr
    r = hailong("token", "create", "--role", "viewer", "--name", "report", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    svc = start_service(cfg, http_port)
    try:
        (dev,) = counters(1)
        dev.send("press 4", "press 4", "press 3", "press 1")
        dev.wait("stored", lambda v: len(v) == 4)
        all_acked(dev)
        base = f"http://127.0.0.1:{http_port}"
        r = httpx.get(f"{base}/api/v1/satisfaction", params={"group": "counter", "from": WIDE[0],
                                                                  "to": WIDE[1]},
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 200, r.text
        (row,) = r.json()["rows"]
        assert row["ratings"] == 4 and row["counts"] == {"1": 1, "2": 0, "3": 1, "4": 2}
        with httpx.Client(base_url=base, timeout=10) as c:
            assert post_login(c, "lan", "a passphrase for lan").status_code == 303
            page = c.get("/")
            assert page.status_code == 200 and "kien-thuy" in page.text
    finally:
        svc.terminate()
        assert svc.wait(15) == 0, svc.stderr.read()
    with Store.open(pg_url) as store:
        assert store.counts()["events"] == 4 and store.counts()["duplicates"] == 0


def test_a_store_that_cannot_be_reached_is_one_line_not_a_traceback(tmp_path):
    url = f"postgresql://hailong:s3cret@127.0.0.1:{free_port()}/hailong"
    cfg, _ = write_config(tmp_path, url, free_port())
    for args in (("run",), ("user", "list")):
        r = hailong(*args, "--config", str(cfg))
        assert r.returncode in (1, 2) and "Traceback" not in r.stderr, r.stderr
        assert "127.0.0.1" in r.stderr and "s3cret" not in r.stderr


def test_a_bad_postgresql_url_is_a_config_error(tmp_path):
    cfg, _ = write_config(tmp_path, "postgresql://db.example.vn:port/hailong", free_port())
    r = hailong("run", "--config", str(cfg))
    assert r.returncode == 2 and "store.url" in r.stderr and "PostgreSQL URL" in r.stderr and "Traceback" not in r.stderr

"""The benchmark scripts still run (tiny sizes); their numbers are not checked here."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.slow


def run_script(name: str, *args: str, timeout: float = 120, preexec_fn=None) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args],
        capture_output=True, cwd=ROOT, timeout=timeout,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"}, preexec_fn=preexec_fn,
    )
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, f"{name} exited {proc.returncode}\n--- stdout ---\n{out}\n--- stderr ---\n{err[-3000:]}"
    return out


def test_device_latency_runs_small(tmp_path):
    raw = tmp_path / "latency.json"
    out = run_script("device_latency.py", "--presses", "20", "--starts", "1", "--json", str(raw))
    assert re.search(r"^machine : .+ cores", out, re.M)
    assert re.search(r"^ledger  : \S+ on ", out, re.M)  # which filesystem the ledger was on
    assert re.search(r"press→feedback p99 = [\d.]+ ms \(target ≤ 10 ms\): (PASS|FAIL)$", out, re.M)
    assert re.search(r"process RSS = [\d.]+ MiB, peak \(VmHWM\) = [\d.]+ MiB \(target ≤ 45 MiB\): (PASS|FAIL)$",
                     out, re.M)
    assert re.search(r"start-up to ready \(median of 1\) = [\d.]+ s \(target ≤ 1\.5 s\): (PASS|FAIL)$", out, re.M)
    for row in ("press→stored (all)", "press→feedback (all)", "ledger.append (commit+fsync)"):
        assert row in out
    data = json.loads(raw.read_text())
    lat = data["latency"]
    assert lat["presses"] == 20 and lat["stats"]["all_feedback"]["n"] == 20
    assert lat["order_violations"] == 0  # feedback never came before its store
    assert data["memory"]["after"]["VmHWM"] > 0


def test_drain_runs_small(tmp_path):
    raw = tmp_path / "drain.json"
    out = run_script("drain.py", "--events", "100", "--outage", "0.2", "--json", str(raw))
    lines = re.findall(r"^drain 100 after outage = [\d.]+ s \(target ≤ 10 s\): (PASS|FAIL)", out, re.M)
    assert len(lines) == 2, out  # group-commit acks and one ack per event
    results = json.loads(raw.read_text())["results"]
    assert [r["mode"] for r in results] == ["batch", "per-event"]
    for r in results:
        assert r["distinct"] == 100 and r["acked_total"] == 100 and r["left_in_ledger"] == 0


@pytest.mark.slow
def test_service_benchmarks_run_small():
    root = ROOT
    r = subprocess.run([sys.executable, "benchmarks/ingest.py", "--events", "400", "--devices", "4"],
                       capture_output=True, text=True, cwd=root, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ingest ratio B/A = " in r.stdout and "400 stored" in r.stdout
    r = subprocess.run([sys.executable, "benchmarks/query.py", "--ratings", "20000", "--repeats", "3"],
                       capture_output=True, text=True, cwd=root, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "monthly officer query p50 = " in r.stdout and "over 20,000 ratings" in r.stdout


@pytest.mark.slow
def test_pages_benchmark_runs_small():
    r = subprocess.run([sys.executable, "benchmarks/pages.py", "--ratings", "20000", "--repeats", "2"],
                       capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert r.returncode == 0, r.stderr
    assert "every page p50 <= 300 ms with 20,000 ratings:" in r.stdout


def _low_nofile() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


@pytest.mark.parametrize("flags", [[], ["--mqtt", "3.1.1", "--anonymous"]], ids=["v5-acl", "v311-anonymous"])
def test_fleet_runs_small(tmp_path, flags):
    """A few dozen simulated counters against real Mosquitto and the real service, broker restart included.

    It starts with 256 open files allowed, fewer than it needs: it must raise the limit itself."""
    raw = tmp_path / "fleet.json"
    out = run_script("fleet.py", "--counters", "30", "--phase-s", "2", "--idle-s", "0.5", "--outage-s", "0.5",
                     "--backoff-max", "2", "--json", str(raw), *flags, timeout=240, preexec_fn=_low_nofile)
    assert re.search(r"^counters: 30 of 30 connected and subscribed in [\d.]+ s", out, re.M), out
    assert re.search(r"^press-to-commit p99 at 10x province peak \(\d+ events/s\) = [\d.]+ ms", out, re.M), out
    assert re.search(r"^drain after broker restart = [\d.]+ s for 30 counters", out, re.M), out
    assert re.search(r"^sustained events/s = \d+ \(60 events acked", out, re.M), out
    assert re.search(r"^limits  : raised RLIMIT_NOFILE from 256 \(hard \d+\) to 1054 ", out, re.M), out
    assert re.search(r"Mosquitto 1054$", out, re.M), out  # the broker inherited it
    r = json.loads(raw.read_text())["results"]
    fleet, counts = r["fleet"], r["store_counts"]
    assert fleet["pressed"] > 120 and fleet["pending"] == 0  # 60 from the burst and 60 from the outage backlog
    assert counts["events"] == fleet["pressed"] and counts.get("held", 0) == 0  # every press stored once, counted
    assert all(p["all_acked"] and p["latency"]["n"] == p["pressed"] for p in r["rates"])
    assert r["restart"]["done"] and r["restart"]["backlog_events"] == 60
    assert r["burst"]["done"] and r["burst"]["latency"]["n"] == 60
    assert fleet["kinds"].get("call") and fleet["kinds"].get("rating")
    assert r["rates"][1]["ticket_latency"]["n"] > 0  # live NEXT calls got their ticket numbers


def test_fleet_two_instances_on_postgres(tmp_path):
    """Two service instances on one shared subscription and a throw-away PostgreSQL: both take a share,
    and their own counts add up to every press stored once. No broker restart (--backlog 0): keeps it short."""
    from tests.postgres import find_bin_dir

    if find_bin_dir() is None:
        pytest.skip("PostgreSQL not installed (no /usr/lib/postgresql/*/bin/initdb): `make system-deps` as root")
    raw = tmp_path / "fleet.json"
    out = run_script("fleet.py", "--counters", "20", "--phase-s", "2", "--idle-s", "0.5", "--backlog", "0",
                     "--postgres", "--instances", "2", "--json", str(raw), timeout=240)
    assert re.search(r"^postgres: throw-away PostgreSQL \d+ .* \(fsync on, synchronous_commit on\)$", out, re.M), out
    assert re.search(r"^== 2 service instances on one shared subscription \(group 'fleet'\), one store ==$", out, re.M)
    assert re.search(r"^service-1 ", out, re.M) and re.search(r"^service-2 ", out, re.M), out
    r = json.loads(raw.read_text())["results"]
    split, fleet, counts = r["instances"], r["fleet"], r["store_counts"]
    assert sorted(split) == ["service-1", "service-2"]
    assert all(v["events_ingested"] > 0 for v in split.values()), split  # the group shares the stream
    assert sum(v["events_ingested"] for v in split.values()) == counts["events"] == fleet["pressed"] > 0
    assert fleet["pending"] == 0 and counts.get("held", 0) == 0
    assert all(r["end"][name]["rss_kib"] > 0 for name in split)  # each instance measured on its own

"""`hailong demo` runs the real firmware against the embedded broker and stops cleanly."""
import signal
import subprocess
import sys

from tests.mosquitto import free_port
from tests.support import ROOT


def test_demo_runs_for_a_duration_and_commits_events(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "hailong.cli", "demo", "--duration", "6", "--seed", "1",
         "--port", str(free_port()), "--data", str(tmp_path / "demo")],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "counter 1 ready" in out
    assert "signin ticket=None officer=can-bo-07" in out  # the demo officer was assigned centrally
    assert "rating" in out and "ledger cleared" in out
    committed = int(out.strip().splitlines()[-1].split("demo stopped: ")[1].split()[0])
    assert committed >= 3


def test_demo_stops_cleanly_on_ctrl_c(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "hailong.cli", "demo", "--port", str(free_port()), "--data", str(tmp_path / "d")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    for line in proc.stdout:
        if "ledger cleared" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()
    assert proc.wait(30) == 0
    assert "is offline" in rest and "demo stopped" in rest


def test_demo_reports_a_taken_port(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "hailong.cli", "demo", "--duration", "1", "--port", str(port),
             "--data", str(tmp_path / "d")],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )
    assert r.returncode == 1 and "already in use" in r.stderr and "--port" in r.stderr

"""`hailong device doctor` against a real broker, with mock pins."""
import subprocess
import sys

from tests.support import ROOT, write_config


def run_doctor(cfg):
    return subprocess.run(
        [sys.executable, "-m", "hailong.cli", "device", "doctor", "--simulate", "--config", str(cfg)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )


def rows(stdout):
    return {line.split()[0]: line.split()[1] for line in stdout.splitlines()[1:] if line.split()[1:2]
            and line.split()[1] in ("PASS", "WARN", "FAIL")}


def test_doctor_passes_with_a_reachable_broker(tmp_path, mosquitto):
    r = run_doctor(write_config(tmp_path, mosquitto))
    assert r.returncode == 0, r.stdout + r.stderr
    table = rows(r.stdout)
    assert set(table) == {"gpio", "display", "broker", "clock", "ledger", "disk", "badge"}
    assert table["broker"] == "PASS" and table["ledger"] == "PASS" and table["gpio"] == "PASS"
    assert "all checks passed" in r.stdout


def test_doctor_fails_clearly_when_the_broker_is_down(tmp_path, mosquitto):
    cfg = write_config(tmp_path, mosquitto)
    mosquitto.stop()
    r = run_doctor(cfg)
    assert r.returncode == 1
    assert rows(r.stdout)["broker"] == "FAIL"
    assert "cannot reach 127.0.0.1" in r.stdout and "1 failed: broker" in r.stdout


def test_doctor_reports_refused_credentials(tmp_path):
    from tests.mosquitto import Mosquitto

    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "dev-1", "right"], check=True, capture_output=True)
    broker = Mosquitto(tmp_path / "m", extra=f"password_file {pw}\n", anonymous=False).start()
    try:
        cfg = write_config(tmp_path, broker, mqtt='password = "wrong"\n')
        r = run_doctor(cfg)
        assert r.returncode == 1 and rows(r.stdout)["broker"] == "FAIL"
        assert "refused 'dev-1'" in r.stdout
    finally:
        broker.stop()

"""State stays its owner's: `sudo hailong device doctor` runs as the data dir's owner, anyone
else is refused, and a file someone else left in the data dir is reported with its fix."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from common import ownership
from common.ownership import OwnershipError, claim

NOBODY = 65534
ROOT = Path(__file__).resolve().parent.parent
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@pytest.fixture
def shared_dir():
    """A folder another user can reach (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="hailong-owner-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


def config(where: Path, data_dir: Path) -> Path:
    (where / "pw").write_text("secret\n")
    (where / "pw").chmod(0o644)
    text = subprocess.run([sys.executable, "-m", "hailong.cli", "device", "example-config"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout
    text = text.replace('data_dir = "/var/lib/hailong"', f'data_dir = "{data_dir}"')
    text = text.replace('password_file = "/etc/hailong/mqtt-password"', f'password_file = "{where / "pw"}"')
    text = text.replace('host = "mqtt.example.vn"', 'host = "127.0.0.1"').replace("\n# port = 1883\n", "\nport = 9\n")
    assert f'data_dir = "{data_dir}"' in text and "port = 9" in text
    path = where / "device.toml"
    path.write_text(text)
    path.chmod(0o644)
    return path


def doctor(cfg: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hailong.cli", "device", "doctor", "--simulate", "--config", str(cfg)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, **kw)


@as_root
def test_root_runs_doctor_as_the_owner_of_the_data_dir(shared_dir):
    data = shared_dir / "data"
    data.mkdir()
    os.chown(data, NOBODY, NOBODY)
    r = doctor(config(shared_dir, data))
    assert "ledger" in r.stdout and "Traceback" not in r.stderr, r.stderr
    assert "running as nobody, the owner of" in r.stderr
    assert (data / "ledger.db").stat().st_uid == NOBODY


@as_root
def test_a_root_owned_ledger_left_behind_is_refused_with_its_fix(shared_dir):
    data = shared_dir / "data"
    data.mkdir()
    (data / "ledger.db").write_bytes(b"")
    os.chown(data, NOBODY, NOBODY)
    r = doctor(config(shared_dir, data))
    assert r.returncode == 1 and r.stdout == ""
    assert f"ledger.db in {data} belong to another user than nobody" in r.stderr
    assert f"sudo chown -R nobody: {data}" in r.stderr


@as_root
def test_another_user_is_refused_and_told_whom_to_run_as(shared_dir):
    data = shared_dir / "data"
    data.mkdir()  # root's
    # A forked child, because this Python lives in root's home, which nobody cannot enter.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            claim(data, command="hailong device doctor")
            message = "went on"
        except OwnershipError as e:
            message = str(e)
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        message = f.read()
    os.waitpid(pid, 0)
    assert f"{data} belongs to root" in message and "sudo -u root hailong device doctor" in message
    assert list(data.iterdir()) == []


@as_root
def test_root_does_not_make_a_data_dir_of_its_own_when_the_service_user_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(ownership, "_service_user_exists", lambda: True)  # as on a counter
    config = tmp_path / "device.toml"
    config.write_text("")
    with pytest.raises(OwnershipError, match="sudo install -d -o hailong -g hailong -m 0750"):
        claim(tmp_path / "absent", config=config)
    assert not (tmp_path / "absent").exists()


def test_the_owner_goes_on(tmp_path):
    assert claim(tmp_path / "new") is None
    assert claim(tmp_path) is None

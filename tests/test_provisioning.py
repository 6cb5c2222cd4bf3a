"""provisioning/: inventory, Mosquitto password/ACL files on a real Mosquitto, bundles, boot partitions, CLI."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from device.config import load_config
from provisioning import bootfs, credentials
from provisioning import inventory as inventory_mod
from provisioning.cli import main, register_with_service
from provisioning.inventory import Inventory
from tests.mosquitto import Mosquitto, find_mosquitto
from tests.test_broker_api import service  # noqa: F401  (fixture: the real API)
from tests.test_deploy_mosquitto import Broker, Client

ROOT = Path(__file__).resolve().parent.parent
WAIT = 10


def passwd_tool() -> str:
    return shutil.which("mosquitto_passwd") or str(Path(find_mosquitto()).with_name("mosquitto_passwd"))


def run(inv: Path, *args: str) -> int:
    return main(["--inventory", str(inv), *args])


def secret(path: Path) -> str:
    return path.read_text().strip()


@pytest.fixture
def inv_dir(tmp_path):
    inv = tmp_path / "inv"
    assert run(inv, "site", "add", "hp", "--broker-host", "127.0.0.1") == 0
    for counter in ("1", "2"):
        assert run(inv, "device", "add", "--site", "hp", "--counter", counter) == 0
    (tmp_path / "service-pw").write_text("service-secret\n")
    assert run(inv, "mosquitto", "export", str(inv / "mosquitto"),
               "--service-password-file", str(tmp_path / "service-pw")) == 0
    return inv


def bundle_password(inv: Path, device: str) -> str:
    return secret(inv / "bundles" / device / "mqtt-password")


@pytest.fixture
def broker(inv_dir, tmp_path):
    m = Mosquitto(tmp_path / "mosq", anonymous=False,
                  extra=f"password_file {inv_dir}/mosquitto/passwd\nacl_file {inv_dir}/mosquitto/acl\n").start()
    try:
        yield m
    finally:
        m.stop()


def connect(m: Mosquitto, user: str, password: str, made: list):
    client = Client(Broker(m.port, 0, None), user, password)
    made.append(client)
    return client, client.connect()


@pytest.fixture
def clients():
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def wait_refused(m: Mosquitto, user: str, password: str, made: list) -> None:
    """After SIGHUP, Mosquitto re-reads its files asynchronously: retry until refused."""
    deadline = time.monotonic() + WAIT
    while True:
        client, reason = connect(m, user, password, made)
        client.close()
        if reason.is_failure:
            assert str(reason) in ("Not authorized", "Bad user name or password"), reason
            return
        assert time.monotonic() < deadline, f"{user} still accepted after reload"


# --- inventory ----------------------------------------------------------------------------------

def test_inventory_write_is_atomic(tmp_path, monkeypatch):
    inv = Inventory(tmp_path)
    inv.add_site("hp", "broker.example")
    before = (tmp_path / "inventory.json").read_bytes()

    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(inventory_mod.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        inv.add_site("other", "broker2.example")
    monkeypatch.undo()
    assert (tmp_path / "inventory.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["inventory.json"]  # no temp file left
    assert stat.S_IMODE((tmp_path / "inventory.json").stat().st_mode) == 0o600
    assert [s["id"] for s in Inventory(tmp_path).sites.all()] == ["hp"]


def test_inventory_holds_no_plain_passwords(inv_dir):
    text = (inv_dir / "inventory.json").read_text()
    for device in ("hl-hp-c1", "hl-hp-c2"):
        assert bundle_password(inv_dir, device) not in text
    assert "service-secret" not in text
    data = json.loads(text)
    assert all(d["password_hash"].startswith("$7$101$") for d in data["devices"].values())


# --- password format ------------------------------------------------------------------------------

def test_passwd_format_matches_mosquitto_passwd(tmp_path):
    ours = credentials.hash_password("s3cret")
    subprocess.run([passwd_tool(), "-c", "-b", str(tmp_path / "p"), "u", "s3cret"], check=True,
                   capture_output=True, timeout=30)
    user, theirs = (tmp_path / "p").read_text().strip().split(":", 1)
    assert user == "u"
    for hashed in (ours, theirs):
        iterations, salt, key = credentials.parse_hash(hashed)
        assert (iterations, len(salt), len(key)) == (101, 12, 64)
        assert hashed.split("$")[:3] == ["", "7", "101"]
    # Our PBKDF2 verifies mosquitto_passwd's hash: the same algorithm and encoding.
    assert credentials.verify_password("s3cret", theirs)
    assert not credentials.verify_password("wrong", theirs)


def test_real_mosquitto_accepts_ours_and_mosquitto_passwd_lines(inv_dir, tmp_path, clients):
    subprocess.run([passwd_tool(), "-c", "-b", str(tmp_path / "p"), "hl-tool", "tool-pw"], check=True,
                   capture_output=True, timeout=30)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "passwd").write_text((inv_dir / "mosquitto" / "passwd").read_text() + (tmp_path / "p").read_text())
    shutil.copy(inv_dir / "mosquitto" / "acl", mixed / "acl")
    m = Mosquitto(tmp_path / "mosq2", anonymous=False,
                  extra=f"password_file {mixed}/passwd\nacl_file {mixed}/acl\n").start()
    try:
        assert str(connect(m, "hl-tool", "tool-pw", clients)[1]) == "Success"
        assert str(connect(m, "hl-hp-c1", bundle_password(inv_dir, "hl-hp-c1"), clients)[1]) == "Success"
    finally:
        m.stop()


# --- a real Mosquitto with generated files ----------------------------------------------------------

def test_each_device_logs_in_and_wrong_passwords_are_refused(inv_dir, broker, clients):
    for device in ("hl-hp-c1", "hl-hp-c2"):
        assert str(connect(broker, device, bundle_password(inv_dir, device), clients)[1]) == "Success"
    assert str(connect(broker, "hailong-service", "service-secret", clients)[1]) == "Success"
    for user, password in (("hl-hp-c1", bundle_password(inv_dir, "hl-hp-c2")), ("hl-hp-c1", "wrong"),
                           ("hl-nobody", "x")):
        assert connect(broker, user, password, clients)[1].is_failure


def test_device_confined_to_its_own_topics(inv_dir, broker, clients):
    service, r = connect(broker, "hailong-service", "service-secret", clients)
    assert str(r) == "Success"
    a, _ = connect(broker, "hl-hp-c1", bundle_password(inv_dir, "hl-hp-c1"), clients)
    b, _ = connect(broker, "hl-hp-c2", bundle_password(inv_dir, "hl-hp-c2"), clients)
    assert service.subscribe("hailong/v1/+/event") == ["Granted QoS 1"]
    assert a.publish("hailong/v1/hl-hp-c2/event", b"forged") == "Not authorized"
    assert a.publish("hailong/v1/hl-hp-c1/event", b"own") == "Success"
    assert service.received("hailong/v1/hl-hp-c1/event") == [b"own"]
    assert "hailong/v1/hl-hp-c2/event" not in service.payloads

    a.subscribe("hailong/v1/hl-hp-c2/ack", "hailong/v1/hl-hp-c1/ack")
    b.subscribe("hailong/v1/hl-hp-c2/ack")
    assert service.publish("hailong/v1/hl-hp-c2/ack", b"for b") == "Success"
    assert service.publish("hailong/v1/hl-hp-c1/ack", b"for a") == "Success"
    assert b.received("hailong/v1/hl-hp-c2/ack") == [b"for b"]
    assert a.received("hailong/v1/hl-hp-c1/ack") == [b"for a"]
    assert a.receives_nothing("hailong/v1/hl-hp-c2/ack", within=0.3)


def test_rotated_and_revoked_passwords_refused_after_reload(inv_dir, broker, clients):
    old1, old2 = bundle_password(inv_dir, "hl-hp-c1"), bundle_password(inv_dir, "hl-hp-c2")
    assert run(inv_dir, "device", "rotate", "hl-hp-c1") == 0
    assert run(inv_dir, "device", "revoke", "hl-hp-c2") == 0
    new1 = bundle_password(inv_dir, "hl-hp-c1")
    assert new1 != old1
    broker.reload()
    wait_refused(broker, "hl-hp-c1", old1, clients)
    wait_refused(broker, "hl-hp-c2", old2, clients)
    assert str(connect(broker, "hl-hp-c1", new1, clients)[1]) == "Success"
    assert str(connect(broker, "hailong-service", "service-secret", clients)[1]) == "Success"
    passwd = (inv_dir / "mosquitto" / "passwd").read_text()
    assert "hl-hp-c2:" not in passwd
    registry = json.loads((inv_dir / "registry.json").read_text())
    assert [d["id"] for d in registry["devices"]] == ["hl-hp-c1"] and registry["revoked"] == ["hl-hp-c2"]


# --- bundles -------------------------------------------------------------------------------------------

def test_bundle_loads_with_device_config(inv_dir):
    bundle = inv_dir / "bundles" / "hl-hp-c1"
    cfg = load_config(bundle / "device.toml")
    assert (cfg.device.id, cfg.device.site, cfg.device.counter) == ("hl-hp-c1", "hp", "1")
    assert cfg.mqtt.password_file == bundle / "mqtt-password"
    assert cfg.mqtt.password == bundle_password(inv_dir, "hl-hp-c1")
    assert cfg.mqtt.host == "127.0.0.1" and cfg.mqtt.prefix == "hailong/v1" and not cfg.mqtt.tls
    key = secret(bundle / "provisioning-key")
    assert len(bytes.fromhex(key)) == 32
    assert Inventory(inv_dir).device("hl-hp-c1")["provisioning_key"] == key
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    for f in bundle.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_tls_bundle_carries_the_ca(tmp_path):
    inv = tmp_path / "inv"
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
    assert run(inv, "site", "add", "kt", "--broker-host", "mqtt.kt.vn", "--port", "8883", "--tls",
               "--ca-file", str(tmp_path / "ca.crt"), "--prefix", "hl/test") == 0
    assert run(inv, "device", "add", "--site", "kt", "--counter", "3", "--id", "kt-3",
               "--out", str(tmp_path / "b")) == 0
    cfg = load_config(tmp_path / "b" / "device.toml")
    assert cfg.mqtt.tls and cfg.mqtt.port == 8883 and cfg.mqtt.prefix == "hl/test"
    assert cfg.mqtt.ca_file == tmp_path / "b" / "ca.crt"
    assert "pattern write hl/test/%u/event" in (inv / "mosquitto" / "acl").read_text()


def test_bundle_keep_password_file(inv_dir, tmp_path):
    current = tmp_path / "current"
    current.write_text(bundle_password(inv_dir, "hl-hp-c1") + "\n")
    password = secret(current)
    assert run(inv_dir, "device", "bundle", "hl-hp-c1", "--keep-password-file", str(current),
               "--out", str(tmp_path / "again")) == 0
    assert secret(tmp_path / "again" / "mqtt-password") == password
    (tmp_path / "wrong").write_text("nope\n")
    assert run(inv_dir, "device", "bundle", "hl-hp-c1", "--keep-password-file", str(tmp_path / "wrong")) == 1


def test_register_with_service_puts_site_and_counter(tmp_path):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers["authorization"], json.loads(request.content)))
        return httpx.Response(200, json={"id": "hl-hp-c1"})

    (tmp_path / "token").write_text("tok\n")
    register_with_service("http://svc/", str(tmp_path / "token"), {"id": "hl-hp-c1", "site": "hp", "counter": "1"},
                          transport=httpx.MockTransport(handler))
    assert seen == [("PUT", "/api/v1/devices/hl-hp-c1", "Bearer tok", {"site": "hp", "counter": "1"})]


# --- boot partition ---------------------------------------------------------------------------------------

CMDLINE = "console=serial0,115200 console=tty1 root=PARTUUID=abcd-02 rootfstype=ext4 fsck.repair=yes rootwait\n"


def fake_bootfs(path: Path) -> Path:
    path.mkdir()
    (path / "config.txt").write_text("# For more options\ndtparam=audio=on\n[cm4]\notg_mode=1\n")
    (path / "cmdline.txt").write_text(CMDLINE)
    return path


def test_boot_write_is_idempotent(inv_dir, tmp_path):
    boot = fake_bootfs(tmp_path / "bootfs")
    assert run(inv_dir, "boot", "write", str(boot), "--device", "hl-hp-c1") == 0
    snapshot = {p.relative_to(boot): p.read_bytes() for p in boot.rglob("*") if p.is_file()}
    assert run(inv_dir, "boot", "write", str(boot), "--device", "hl-hp-c1") == 0
    assert {p.relative_to(boot): p.read_bytes() for p in boot.rglob("*") if p.is_file()} == snapshot

    config = (boot / "config.txt").read_text()
    assert config.startswith("# For more options\ndtparam=audio=on\n[cm4]\notg_mode=1\n")
    assert config.split("[all]")[-1].split() == ["dtparam=spi=on", "enable_uart=1"]
    cmdline = (boot / "cmdline.txt").read_text()
    assert cmdline.count("\n") == 1 and cmdline.startswith(CMDLINE.strip())
    assert "systemd.run=/boot/firmware/firstrun.sh" in cmdline
    assert "bash /boot/firmware/hailong/firstboot.sh" in (boot / "firstrun.sh").read_text()
    assert load_config(boot / "hailong" / "device.toml").device.id == "hl-hp-c1"
    for name in ("mqtt-password", "provisioning-key", "hailong-device.service", "firstboot.sh"):
        assert (boot / "hailong" / name).is_file()
    script = (boot / "hailong" / "firstboot.sh").read_text()
    assert "install -d -m 0700" in script and "systemctl ${PREFIX:+--root=\"$PREFIX\"} enable hailong-device.service" in script
    subprocess.run(["bash", "-n", str(boot / "hailong" / "firstboot.sh")], check=True, timeout=30)
    subprocess.run(["bash", "-n", str(boot / "firstrun.sh")], check=True, timeout=30)


def test_boot_write_keeps_imagers_firstrun(inv_dir, tmp_path):
    boot = fake_bootfs(tmp_path / "bootfs")
    imager = ("#!/bin/bash\nset +e\nCURRENT_HOSTNAME=`cat /etc/hostname`\necho imager-setup\n"
              "rm -f /boot/firmware/firstrun.sh\nsed -i 's| systemd.run.*||g' /boot/firmware/cmdline.txt\nexit 0\n")
    (boot / "firstrun.sh").write_text(imager)
    (boot / "cmdline.txt").write_text(CMDLINE.strip() + " systemd.run=/boot/firmware/firstrun.sh "
                                      "systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n")
    for _ in range(2):
        assert run(inv_dir, "boot", "write", str(boot), "--device", "hl-hp-c1") == 0
    lines = (boot / "firstrun.sh").read_text().splitlines()
    assert "echo imager-setup" in lines
    ours = lines.index("bash /boot/firmware/hailong/firstboot.sh")
    assert lines.count("bash /boot/firmware/hailong/firstboot.sh") == 1
    assert lines.index("echo imager-setup") < ours < lines.index("rm -f /boot/firmware/firstrun.sh")
    assert (boot / "cmdline.txt").read_text().count("systemd.run=") == 1


def test_boot_write_refuses_a_non_boot_partition(inv_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run(inv_dir, "boot", "write", str(tmp_path / "empty"), "--device", "hl-hp-c1") == 1
    assert "cmdline.txt" in capsys.readouterr().err


# --- the CLI as a technician runs it -------------------------------------------------------------------

def cli(*args: str, env_home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, XDG_DATA_HOME=str(env_home))
    return subprocess.run([sys.executable, "-m", "provisioning.cli", *args], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)


def test_cli_never_prompts_and_uses_the_default_inventory(tmp_path):
    r = cli("site", "add", "hp", "--broker-host", "10.0.0.2", env_home=tmp_path)
    assert r.returncode == 0, r.stderr
    r = cli("device", "add", "--site", "hp", "--counter", "7", env_home=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "hailong" / "bundles" / "hl-hp-c7" / "device.toml").is_file()
    r = cli("mosquitto", "export", str(tmp_path / "mq"), env_home=tmp_path)
    assert r.returncode == 0, r.stderr
    password = r.stdout.splitlines()[1]
    assert credentials.verify_password(password, (tmp_path / "mq" / "passwd").read_text().splitlines()[0].split(":", 1)[1])
    # Once created, the service account's password is never shown again.
    r = cli("mosquitto", "export", str(tmp_path / "mq"), env_home=tmp_path)
    assert r.returncode == 0 and password not in r.stdout


@pytest.mark.parametrize("args, message", [
    (("device", "add", "--site", "hp"), "--counter"),
    (("device", "add", "--site", "nowhere", "--counter", "1"), "unknown site 'nowhere'"),
    (("device", "rotate", "hl-nobody"), "unknown device 'hl-nobody'"),
    (("site", "add", "x"), "--broker-host"),
    (("site", "add", "x", "--broker-host", "h", "--ca-file", "/nonexistent"), "--ca-file"),
    (("device", "add", "--site", "hp", "--counter", "1", "--service-url", "http://x"), "--token-file"),
    (("frobnicate",), "invalid choice"),
])
def test_cli_bad_arguments_exit_non_zero_with_a_message(tmp_path, args, message):
    assert cli("site", "add", "hp", "--broker-host", "h", env_home=tmp_path).returncode == 0
    r = cli(*args, env_home=tmp_path)
    assert r.returncode != 0 and message in r.stderr, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr


def test_cli_serial_reaches_the_serial_client(tmp_path, capsys):
    assert main(["--inventory", str(tmp_path), "serial", "--port", str(tmp_path / "no-such-tty"), "info"]) == 1
    assert "cannot open serial port" in capsys.readouterr().err


def test_cli_serial_hands_its_arguments_to_serial_client(tmp_path, monkeypatch):
    import types

    seen = []

    def main_serial(argv, record=None, bundles_dir=None):
        seen.append(("serial", argv, bundles_dir))
        record({"device_id": "d", "at_ms": 1, "passed": True, "checks": []})
        return 0

    fake = types.SimpleNamespace(main_serial=main_serial,
                                 main_badge=lambda argv: seen.append(("badge", argv, None)) or 3)
    monkeypatch.setitem(sys.modules, "provisioning.serial_client", fake)
    inv = tmp_path / "inv"
    assert main(["--inventory", str(inv), "serial", "--port", "/dev/ttyACM0", "selftest"]) == 0
    assert main(["--inventory", str(inv), "badge", "enroll", "--officer", "cb-1"]) == 3
    assert seen == [("serial", ["--port", "/dev/ttyACM0", "selftest"], inv / "bundles"),
                    ("badge", ["enroll", "--officer", "cb-1"], None)]
    from provisioning.inventory import Inventory

    kept = Inventory(inv)
    try:
        assert [r["device_id"] for r in kept.selftests.all()] == ["d"]  # the self-test table was recorded
    finally:
        kept.close()


def test_selftest_tables_are_kept_in_the_inventory(tmp_path):
    from provisioning.inventory import Inventory

    inv = Inventory(tmp_path / "inv")
    try:
        inv.record_selftest({"device_id": "hl-a-c1", "at_ms": 2, "passed": False, "checks": [["button 3", "FAIL", "not pressed"]]})
        inv.record_selftest({"device_id": "hl-a-c1", "at_ms": 5, "passed": True, "checks": []})
        inv.record_selftest({"device_id": "hl-a-c2", "at_ms": 3, "passed": True, "checks": []})
    finally:
        inv.close()
    again = Inventory(tmp_path / "inv")
    try:
        assert [r["passed"] for r in again.selftests_of("hl-a-c1")] == [False, True]
    finally:
        again.close()


def test_device_add_registers_with_the_real_service(tmp_path, service):  # noqa: F811
    """The real API (uvicorn + store + ingest on a real Mosquitto), as the service tests stand it up."""
    token = tmp_path / "token"
    token.write_text(service.tokens["admin"])
    inv = tmp_path / "inv"
    assert main(["--inventory", str(inv), "site", "add", "kien-thuy", "--broker-host", "mqtt.example.vn"]) == 0
    assert main(["--inventory", str(inv), "device", "add", "--site", "kien-thuy", "--counter", "3",
                 "--service-url", service.server.url, "--token-file", str(token)]) == 0
    (dev,) = [d for d in service.store.devices() if d["device"] == "hl-kien-thuy-c3"]
    assert (dev["registered"], dev["site"], dev["counter"]) == (True, "kien-thuy", "3")

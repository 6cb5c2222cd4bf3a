"""The counter talks to Mosquitto over TLS with username/password, and refuses an untrusted server."""
import shutil
import subprocess

import pytest

from tests.mosquitto import Mosquitto, free_port
from tests.support import DeviceProcess, FakeService, write_config

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI needed to make test certificates")


def make_ca_and_server(d):
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    for name in ("ca", "other-ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.crt")


@pytest.fixture
def tls_broker(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    make_ca_and_server(certs)
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "dev-1", "s3cret"], check=True, capture_output=True)
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "test-service", "svc"], check=True, capture_output=True)
    tls_port = free_port()
    broker = Mosquitto(tmp_path / "m", anonymous=False, extra=(
        f"password_file {pw}\n"
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {certs / 'ca.crt'}\ncertfile {certs / 'server.crt'}\nkeyfile {certs / 'server.key'}\n"
    ))
    # The plain listener stays for the stand-in service; the device only gets the TLS port.
    broker.start()
    broker.tls_port = tls_port
    broker.certs = certs
    yield broker
    broker.stop()


def tls_config(tmp_path, broker, ca: str):
    return write_config(tmp_path, broker, port=broker.tls_port,
                        mqtt=f'tls = true\nca_file = "{broker.certs / ca}"\npassword = "s3cret"\n')


def test_device_delivers_over_tls_with_password(tmp_path, tls_broker):
    service = FakeService(tls_broker, username="test-service", password="svc")
    cfg = tls_config(tmp_path, tls_broker, "ca.crt")
    dev = DeviceProcess(cfg)
    try:
        dev.wait_ready()
        dev.wait("online", lambda v: v[-1] is True)
        dev.send("press 3")
        dev.wait("acked")
        assert [e["score"] for e in service.events()] == [3]
    finally:
        dev.close()
        service.close()


def test_device_refuses_a_server_signed_by_another_ca(tmp_path, tls_broker):
    cfg = tls_config(tmp_path, tls_broker, "other-ca.crt")
    dev = DeviceProcess(cfg)
    try:
        dev.wait_ready()
        dev.send("press 2")
        dev.wait("stored")  # the vote is safe in the ledger even though the link is refused
        dev.stderr.wait_for(lambda lines: any("certificate verify failed" in line for line in lines),
                            timeout=15, what="a TLS verification error in the log")
        assert dev.of("online") == [] and dev.of("acked") == []
    finally:
        dev.close()

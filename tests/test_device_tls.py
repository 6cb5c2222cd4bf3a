"""The counter talks to Mosquitto over TLS (password or client certificate), and refuses an untrusted server."""
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
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=dev-1", "-keyout", "dev-1.key", "-out", "dev-1.csr")
    run("x509", "-req", "-in", "dev-1.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-out", "dev-1.crt")


@pytest.fixture
def tls_broker(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    make_ca_and_server(certs)
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "dev-1", "s3cret"], check=True, capture_output=True)
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "test-service", "svc"], check=True, capture_output=True)
    tls_port, mtls_port = free_port(), free_port()
    server_tls = f"cafile {certs / 'ca.crt'}\ncertfile {certs / 'server.crt'}\nkeyfile {certs / 'server.key'}\n"
    broker = Mosquitto(tmp_path / "m", anonymous=False, extra=(
        f"password_file {pw}\n"
        f"listener {tls_port} 127.0.0.1\n" + server_tls
        + f"listener {mtls_port} 127.0.0.1\n" + server_tls + "require_certificate true\n"
    ))
    # The plain listener stays for the stand-in service; the device only gets the TLS port.
    broker.start()
    broker.tls_port = tls_port
    broker.mtls_port = mtls_port
    broker.certs = certs
    yield broker
    broker.stop()


def tls_config(tmp_path, broker, ca: str, *, port: int | None = None, mqtt: str = ""):
    return write_config(tmp_path, broker, port=port or broker.tls_port,
                        mqtt=f'tls = true\nca_file = "{broker.certs / ca}"\npassword = "s3cret"\n' + mqtt)


def assert_delivers(broker, cfg, score: int) -> None:
    """One press on a device with `cfg` reaches the service through `broker` and is acked."""
    service = FakeService(broker, username="test-service", password="svc")
    dev = DeviceProcess(cfg)
    try:
        dev.wait_ready()
        dev.wait("online", lambda v: v[-1] is True)
        dev.send(f"press {score}")
        dev.wait("acked")
        assert [e["score"] for e in service.events()] == [score]
    finally:
        dev.close()
        service.close()


def test_device_delivers_over_tls_with_password(tmp_path, tls_broker):
    assert_delivers(tls_broker, tls_config(tmp_path, tls_broker, "ca.crt"), 3)


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


def test_device_presents_its_client_certificate(tmp_path, tls_broker):
    certs = tls_broker.certs
    cfg = tls_config(tmp_path, tls_broker, "ca.crt", port=tls_broker.mtls_port,
                     mqtt=f'cert_file = "{certs / "dev-1.crt"}"\nkey_file = "{certs / "dev-1.key"}"\n')
    assert_delivers(tls_broker, cfg, 4)


def test_listener_requiring_a_certificate_refuses_a_device_without_one(tmp_path, tls_broker):
    cfg = tls_config(tmp_path, tls_broker, "ca.crt", port=tls_broker.mtls_port)
    dev = DeviceProcess(cfg)
    try:
        dev.wait_ready()
        dev.stderr.wait_for(lambda lines: sum("closed the connection before accepting us" in line for line in lines) >= 2,
                            timeout=15, what="repeated refused TLS handshakes in the log")
        assert dev.of("online") == []
    finally:
        dev.close()

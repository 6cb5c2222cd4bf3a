"""Alert e-mails over STARTTLS and over TLS, to a real SMTP server whose certificate our CA signed;
a server the configured CA did not sign is refused, and the notice stays in the outbox."""
from __future__ import annotations

import shutil
import ssl

import pytest

from broker.alerts.channels import ChannelError, send_email
from broker.config import config_from_dict
from tests.alert_peers import SmtpSink
from tests.test_device_tls import make_ca_and_server

pytestmark = [pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI needed to make test certificates"),
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")]
MAIL = {"to": ["quanly@example.vn"], "subject": "[hailong] CẢNH BÁO: thử", "text": "Thiết bị mất kết nối\n"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    make_ca_and_server(d)
    return d


def server_context(certs) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / "server.crt", certs / "server.key")
    return ctx


def email_settings(tmp_path, port: int, security: str, ca):
    (tmp_path / "pw").write_text("mat-khau\n")
    return config_from_dict({"mqtt": {"embedded": False}, "store": {"url": "sqlite:///x.db"}, "email": {
        "host": "127.0.0.1", "port": port, "security": security, "ca_file": str(ca), "username": "hailong",
        "password_file": str(tmp_path / "pw"), "to": ["quanly@example.vn"]}}).email


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_mail_goes_through_a_verified_encrypted_connection(tmp_path, certs, security):
    context = server_context(certs)
    sink = SmtpSink("hailong", "mat-khau", **{security: context}).start()
    try:
        send_email(email_settings(tmp_path, sink.port, security, certs / "ca.crt"), MAIL)
        ((to, mail),) = sink.mails.wait_for(lambda m: m, what="the mail")
        assert to == ["quanly@example.vn"] and mail["Subject"] == MAIL["subject"]
        assert mail.get_content().splitlines() == MAIL["text"].splitlines()
        with pytest.raises(ChannelError):  # signed by a CA we were not told to trust
            send_email(email_settings(tmp_path, sink.port, security, certs / "other-ca.crt"), MAIL)
        assert len(sink.mails.items) == 1
    finally:
        sink.stop()

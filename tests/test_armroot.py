"""The arm64 root's settings taken from this machine: apt's mirror, pip's index and trust."""
from __future__ import annotations

from provisioning import armroot
from provisioning.cli import main as provision


def test_the_mirror_is_the_one_apt_uses(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\nComponents: main\n")
    assert armroot.apt_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list").write_text("# old style\ndeb [arch=amd64] http://old.example/debian bookworm main\n")
    assert armroot.apt_mirror(tmp_path) == "http://old.example/debian"
    assert armroot.apt_mirror(tmp_path / "nothing") == armroot.FALLBACK_MIRROR


def test_pip_settings_leave_out_this_machines_own_files(tmp_path, monkeypatch):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nfind-links = /opt/wheels\nconstraint = /etc/c.txt\n"
                    "extra-index-url = file:///opt/pypi/simple https://mirror.example/simple\ncert = /etc/ca.pem\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    monkeypatch.setenv("PIP_INDEX_URL", "https://index.example/simple")
    settings = armroot.host_pip_settings()
    assert settings["extra-index-url"] == "https://mirror.example/simple"
    assert settings["index-url"] == "https://index.example/simple"
    assert "find-links" not in settings and "constraint" not in settings


def test_wheels_names_the_supported_pythons(capsys):
    assert provision(["wheels", "--out", "x", "--python", "3.12"]) == 1
    assert "choose from 3.11, 3.13" in capsys.readouterr().err

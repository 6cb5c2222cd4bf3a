"""deploy/hailong-hall.service: Chromium in kiosk mode on the hall's TV, playing the voice unprompted."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT

UNIT = ROOT / "deploy" / "hailong-hall.service"


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(UNIT, encoding="utf-8")
    return unit


def test_the_unit_runs_chromium_full_screen_with_the_hall_s_address_and_sound():
    service = read_unit()["Service"]
    cmd = service["ExecStart"].replace("\\\n", " ").split()
    assert cmd[:2] == ["/usr/bin/cage", "-s"] and "/usr/bin/chromium" in cmd
    # Without this flag the page could not start the voice: nobody clicks a TV.
    assert {"--kiosk", "--autoplay-policy=no-user-gesture-required", "${HALL_URL}"} <= set(cmd)
    assert service["EnvironmentFile"] == "/etc/hailong/hall.env"  # the URL holds the display token
    assert service["Restart"] == "always" and service["User"] == "hailong-hall"
    assert read_unit()["Install"]["WantedBy"] == "graphical.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    # verify wants ExecStart's binary to exist; cage and chromium live on the display's Pi only.
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text(encoding="utf-8").replace("/usr/bin/cage", sys.executable), encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if UNIT.name in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr

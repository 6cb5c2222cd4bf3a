import os
import subprocess
import sys

import pytest

from tests.support import ROOT


def hailong(*args):
    return subprocess.run([sys.executable, "-m", "hailong.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=30)


def test_unknown_area_is_an_error_with_the_choices():
    r = hailong("frobnicate")
    assert r.returncode == 2 and "device" in r.stderr and "demo" in r.stderr


def test_device_run_does_not_import_the_service_or_web_stack():
    code = (
        "import sys, device.cli, device.runtime; "
        "heavy = [m for m in ('amqtt', 'broker', 'broker.embedded', 'asyncio', 'luma.core') if m in sys.modules]; "
        "print(heavy)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


@pytest.mark.skipif(os.path.exists("/dev/spidev0.0"), reason="this machine has the hardware")
def test_missing_hardware_is_a_clear_error_not_a_traceback(tmp_path):
    cfg = tmp_path / "d.toml"
    cfg.write_text('[device]\nid = "d1"\nsite = "s"\ncounter = "1"\ndata_dir = "%s"\n[mqtt]\nhost = "127.0.0.1"\n'
                   % (tmp_path / "data"))
    r = hailong("device", "run", "--config", str(cfg))
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("hailong device: cannot open the ") and "--simulate" in r.stderr
    assert "Traceback" not in r.stderr

"""A full SD card: the press is refused with a visible "Err", nothing stored is lost, and the
counter carries on by itself once space returns. The data dir is a small real tmpfs."""
from __future__ import annotations

import errno
import os
import subprocess

import pytest

from tests.support import DeviceProcess, FakeService, write_config


@pytest.fixture
def small_disk(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root here")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(data)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    yield data
    subprocess.run(["umount", "-l", str(data)], check=False)


def fill(path) -> int:
    """Write until the filesystem has not one byte left; returns how many bytes it took."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    written = 0
    try:
        for size in (1 << 16, 1 << 12, 1):
            while True:
                try:
                    written += os.write(fd, bytes(size))
                except OSError as e:
                    assert e.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return written


def test_full_disk_refuses_with_err_loses_nothing_and_recovers(tmp_path, mosquitto, small_disk):
    cfg = write_config(tmp_path, mosquitto, data_dir=small_disk,
                       extra="[ledger]\nack_timeout_s = 2\n[rating]\nrepeat_gap_s = 0\n")
    mosquitto.stop()  # what is stored before the disk fills is not yet at the service
    dev = DeviceProcess(cfg)
    service = None
    try:
        dev.wait_ready()
        dev.send("press 1", "press 2", "press 3")
        dev.wait("stored", lambda v: len(v) == 3)
        filler = small_disk / "filler"
        assert fill(filler) > 0

        dev.send("press 4")
        dev.wait("display", lambda v: v[-1] == " Err")
        assert "full" in dev.wait("error")[-1]
        assert len(dev.stored()) == 3 and dev.proc.poll() is None

        # The service comes back while the disk is still full: the backlog goes out, and the acks
        # (a delete, which a full disk refuses too) are kept and retried instead of crashing the device.
        mosquitto.start()
        service = FakeService(mosquitto)
        stored = {(e["ledger"], e["seq"]): e for e in dev.stored()}
        service.received.wait_for(lambda items: set(stored) <= {(e["ledger"], e["seq"]) for _, e in items},
                                  timeout=30, what="the three stored votes at the service")
        assert all(service.committed[("dev-1", *k)] == e for k, e in stored.items())
        dev.wait("error", lambda v: any(x.startswith("ack:") for x in v))
        assert dev.proc.poll() is None

        filler.unlink()  # space returns: no restart, no human
        dev.wait("acked", lambda v: sorted(s for a in v for s in a) == [1, 2, 3], timeout=30)
        dev.send("press 4")
        dev.wait("stored", lambda v: len(v) == 4)
        assert dev.stored()[-1]["score"] == 4 and dev.stored()[-1]["flags"] == []
        dev.wait("acked", lambda v: 4 in [s for a in v for s in a], timeout=30)
        assert dev.quit() == 0
    finally:
        dev.close()
        if service is not None:
            service.close()

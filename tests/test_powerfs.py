"""The power-cut filesystem itself: what it keeps across a cut is what a disk would keep."""
from __future__ import annotations

import errno
import mmap
import os
import shutil
import sqlite3

import pytest

from tests.powerfs import SECTOR, PowerDisk, fuse_available

pytestmark = pytest.mark.skipif(fuse_available() is not None, reason=f"no FUSE: {fuse_available()}")


@pytest.fixture
def disk(tmp_path):
    d = PowerDisk(tmp_path / "sdcard", tmp_path / "mnt")
    d.mount()
    yield d
    d.close()


def write(path, data: bytes, *, sync: bool, offset: int = 0) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, offset)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cut_and_remount(disk: PowerDisk, torn_seed: int | None = None) -> dict:
    answer = disk.cut(torn_seed)
    disk.mount()
    return answer


def test_fsynced_data_survives_and_unsynced_data_is_lost(disk):
    f = disk.mountpoint / "a"
    write(f, b"durable", sync=True)
    sync_dir(disk.mountpoint)
    write(f, b"DURABLE and more", sync=False)
    assert f.read_bytes() == b"DURABLE and more"  # everyone sees it until the power goes
    cut_and_remount(disk)
    assert f.read_bytes() == b"durable"


def test_a_new_name_needs_a_directory_fsync(disk):
    m = disk.mountpoint
    write(m / "orphan", b"data synced, name not", sync=True)
    write(m / "named", b"both synced", sync=True)
    (m / "late").write_bytes(b"x")
    sync_dir(m)  # makes every entry durable as of now, "orphan" and "late" included
    write(m / "after", b"created after the directory sync", sync=True)
    os.rename(m / "named", m / "renamed")
    cut_and_remount(disk)
    assert sorted(os.listdir(m)) == ["late", "named", "orphan"]
    assert (m / "named").read_bytes() == b"both synced"
    assert (m / "late").read_bytes() == b""  # its name was durable, its data never was


def test_torn_writes_land_by_sector_and_never_outside_the_write(disk):
    f = disk.mountpoint / "f"
    write(f, b"." * (16 * SECTOR), sync=True)
    sync_dir(disk.mountpoint)
    outcomes = set()
    for seed in range(12):
        write(f, b"#" * (8 * SECTOR), sync=False, offset=4 * SECTOR)
        cut_and_remount(disk, torn_seed=seed)
        data = f.read_bytes()
        assert len(data) == 16 * SECTOR
        assert data[:4 * SECTOR] == data[12 * SECTOR:] == b"." * (4 * SECTOR)
        sectors = [data[i:i + SECTOR] for i in range(4 * SECTOR, 12 * SECTOR, SECTOR)]
        assert all(s in (b"." * SECTOR, b"#" * SECTOR) for s in sectors)
        outcomes.add(sum(s == b"#" * SECTOR for s in sectors))
        write(f, b"." * (16 * SECTOR), sync=True)  # back to the start
    assert 0 in outcomes and 8 in outcomes and outcomes - {0, 8}, outcomes  # lost, whole, torn


def test_quota_gives_enospc_and_statfs_tells(disk):
    f = disk.mountpoint / "big"
    disk.quota(64 * 1024)
    with pytest.raises(OSError) as err:
        write(f, b"x" * (128 * 1024), sync=False)
    assert err.value.errno == errno.ENOSPC
    assert shutil.disk_usage(disk.mountpoint).total == 64 * 1024
    disk.quota(None)
    write(f, b"x" * (128 * 1024), sync=True)


def test_a_full_disk_refuses_even_writes_in_place_until_space_returns(disk):
    f = disk.mountpoint / "in-place"
    write(f, b"." * 4096, sync=True)
    disk.fill()
    with pytest.raises(OSError) as err:
        with open(f, "r+b") as fh:
            fh.write(b"#" * 512)
            fh.flush()
    assert err.value.errno == errno.ENOSPC
    assert shutil.disk_usage(disk.mountpoint).free == 0
    assert f.read_bytes() == b"." * 4096
    disk.quota(None)
    write(f, b"#" * 4096, sync=True)
    assert f.read_bytes() == b"#" * 4096


def test_shared_mmap_works_for_sqlite_wal(disk):
    f = disk.mountpoint / "shm"
    write(f, bytes(4096), sync=False)
    with open(f, "r+b") as fh, mmap.mmap(fh.fileno(), 4096, mmap.MAP_SHARED) as mm:
        mm[:5] = b"hello"
        mm.flush()
    assert f.read_bytes()[:5] == b"hello"
    db = sqlite3.connect(disk.mountpoint / "x.db")
    assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    db.execute("CREATE TABLE t (v)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    assert (disk.mountpoint / "x.db-shm").exists()
    db.close()


def test_a_frozen_disk_applies_nothing_more(disk):
    f = disk.mountpoint / "f"
    write(f, b"before", sync=True)
    sync_dir(disk.mountpoint)
    disk.freeze_after(2)
    fd = os.open(f, os.O_RDWR)
    os.pwrite(fd, b"AFTER1", 0)  # the first change passes; the second freezes the disk
    assert disk.stats()["changes"] >= 1
    import threading

    blocked = threading.Thread(target=lambda: _try_sync(fd), daemon=True)
    blocked.start()
    assert disk.wait_frozen(10)
    assert blocked.is_alive(), "a change after the power failed must never complete"
    cut_and_remount(disk)
    blocked.join(10)
    assert f.read_bytes() == b"before"


def _try_sync(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:
        pass  # the filesystem went away under it
    finally:
        try:
            os.close(fd)
        except OSError:
            pass

"""A filesystem that loses power: everything not fsynced is gone after a cut.

`python -m tests.powerfs DISK MOUNTPOINT` serves a FUSE filesystem (mfusepy over libfuse 3)
whose *durable* state lives in the directory DISK and whose *unsynced* state lives only in
this process's memory, as on a real SD card with a kernel page cache in front of it:

* `write` and `truncate` change the file as everyone sees it, and are remembered as pending
  operations; `fsync`/`fdatasync` of the file applies them to DISK (the file's data and size).
* `create`, `unlink`, `rename`, `mkdir` change the directory as everyone sees it; only an
  `fsync` of the directory itself makes its entries durable. A file that was fsynced but
  whose name never was is gone after a cut.
* A cut throws the pending state away and exits at once. With `torn`, each pending write
  instead lands whole, not at all, or as a random subset of its 512-byte sectors, in any
  mix (the disk may have flushed some of it), and each directory's unsynced entries land or
  not as a whole (a journal commit). Bytes outside a write's own range are never damaged,
  which is what SQLite's default "powersafe overwrite" assumes of a disk.

Shared writable mmap works (no direct_io: pages go through the kernel's page cache), which
SQLite's WAL index (`-shm`) needs; POSIX locks are the kernel's own (no `lock` handler).

Control, one command per line on stdin, one JSON line per answer on stdout:

    freeze          the power fails now: every later change blocks forever, none is applied
    freeze-after N  the same at the N-th change from now, so a cut lands inside a commit
    cut [torn SEED] apply nothing (or a seeded torn subset) of what is unsynced, exit at once
    quota BYTES     writes that would make the files larger than BYTES fail with ENOSPC
    full            every write fails with ENOSPC, even one in place: a full log-structured or
                    copy-on-write filesystem (f2fs, common on SD cards) needs free blocks to rewrite
    quota off       (ends `full` too)
    stats

The test side is `PowerDisk` below.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT_INO = 1
SECTOR = 512


@dataclass
class Node:
    ino: int
    kind: str  # "f", "d" or "l" (a symlink: its target in `data`, fixed at creation)
    mode: int
    data: bytearray = field(default_factory=bytearray)
    children: dict[str, int] = field(default_factory=dict)
    pending: list[tuple] = field(default_factory=list)  # ("w", offset, bytes) | ("t", size)
    mtime_ns: int = field(default_factory=time.time_ns)
    links: int = 0


class Disk:
    """The durable state: DISK/tree.json (directories, kinds, modes) and DISK/ino/<n> (file data)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "ino").mkdir(parents=True, exist_ok=True)
        tree = path / "tree.json"
        if tree.exists():
            saved = json.loads(tree.read_text())
            self.next_ino = saved["next_ino"]
            self.nodes = {int(k): v for k, v in saved["nodes"].items()}
        else:
            self.next_ino = ROOT_INO + 1
            self.nodes = {ROOT_INO: {"kind": "d", "mode": 0o755, "children": {}}}
            self.save()

    def data_path(self, ino: int) -> Path:
        return self.path / "ino" / str(ino)

    def read(self, ino: int) -> bytearray:
        try:
            return bytearray(self.data_path(ino).read_bytes())
        except FileNotFoundError:
            return bytearray()

    def apply(self, ino: int, ops) -> None:
        fd = os.open(self.data_path(ino), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            for op in ops:
                if op[0] == "w":
                    os.pwrite(fd, op[2], op[1])
                else:
                    os.ftruncate(fd, op[1])
        finally:
            os.close(fd)

    def remember(self, node: Node) -> None:
        saved = {"kind": node.kind, "mode": node.mode, "children": {}}
        if node.kind == "l":
            saved["target"] = node.data.decode()  # a symlink is whole once its name is durable
        self.nodes.setdefault(node.ino, saved)

    def save(self) -> None:
        # The test machine's own disk does not lose power: a plain rename is atomic enough here.
        tmp = self.path / "tree.json.tmp"
        tmp.write_text(json.dumps({"next_ino": self.next_ino, "nodes": self.nodes}))
        os.replace(tmp, self.path / "tree.json")

    def reachable(self) -> set[int]:
        seen, todo = set(), [ROOT_INO]
        while todo:
            ino = todo.pop()
            if ino in seen or ino not in self.nodes:
                continue
            seen.add(ino)
            todo.extend(self.nodes[ino]["children"].values())
        return seen


def _fuse_error(code: int):
    import mfusepy

    return mfusepy.FuseOSError(code)


class PowerFS:
    """The mfusepy operations. One lock: SQLite's traffic is small, correctness is the point."""

    use_ns = True

    def __init__(self, disk: Disk, out=sys.stdout) -> None:
        self.disk = disk
        self.out = out
        self._mutex = threading.RLock()
        self.nodes: dict[int, Node] = {}
        self.handles: dict[int, int] = {}  # fh -> ino
        self.next_fh = 1
        self.changes = 0
        self.freeze_at: int | None = None
        self.frozen = False
        self._never = threading.Event()
        self.quota: int | None = None
        self.full = False  # no write at all, not even in place
        self.stats = {"writes": 0, "fsyncs": 0, "dirsyncs": 0, "enospc": 0}
        self._load()

    # ----- state ------------------------------------------------------------------

    def _load(self) -> None:
        keep = self.disk.reachable()
        for ino in keep:
            saved = self.disk.nodes[ino]
            node = Node(ino, saved["kind"], saved["mode"], children=dict(saved["children"]))
            if node.kind == "f":
                node.data = self.disk.read(ino)
            elif node.kind == "l":
                node.data = bytearray(saved["target"].encode())
            self.nodes[ino] = node
        for node in list(self.nodes.values()):
            for child in node.children.values():
                self.nodes[child].links += 1
        self.nodes[ROOT_INO].links = 1
        # What no durable directory names is gone for good, as after fsck.
        self.disk.nodes = {ino: v for ino, v in self.disk.nodes.items() if ino in keep}
        for stale in self.disk.path.joinpath("ino").iterdir():
            if int(stale.name) not in keep:
                stale.unlink()
        self.disk.save()

    def used(self) -> int:
        return sum(len(n.data) for n in self.nodes.values() if n.kind == "f")

    def say(self, record: dict) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def _lookup(self, path: str) -> Node:
        node = self.nodes[ROOT_INO]
        for part in (p for p in path.split("/") if p):
            if node.kind != "d" or part not in node.children:
                raise _fuse_error(errno.ENOENT)
            node = self.nodes[node.children[part]]
        return node

    def _parent(self, path: str) -> tuple[Node, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self._lookup(head or "/")
        if parent.kind != "d":
            raise _fuse_error(errno.ENOTDIR)
        return parent, name

    def _node(self, path: str | None, fh: int | None) -> Node:
        if fh is not None and fh in self.handles:
            return self.nodes[self.handles[fh]]
        if path is None:
            raise _fuse_error(errno.EBADF)
        return self._lookup(path)

    def _change(self, op: str) -> None:
        """Every change passes here first: after the power failed, it never completes."""
        with self._mutex:
            self.changes += 1
            if not self.frozen and self.freeze_at is not None and self.changes >= self.freeze_at:
                self.frozen = True
                self.say({"frozen": self.changes, "op": op})
            frozen = self.frozen
        if frozen:
            self._never.wait()
            raise _fuse_error(errno.EIO)

    def _unlink_node(self, ino: int) -> None:
        node = self.nodes[ino]
        node.links -= 1
        if node.links <= 0 and ino not in self.handles.values():
            del self.nodes[ino]

    # ----- control --------------------------------------------------------------------

    def freeze(self, after: int = 0) -> dict:
        with self._mutex:
            if after <= 0:
                self.frozen = True
                return {"frozen": self.changes, "op": None}
            self.freeze_at = self.changes + after
            return {"armed": self.freeze_at}

    def cut(self, torn_seed: int | None) -> dict:
        with self._mutex:
            self.frozen = True
            landed = self._tear(random.Random(torn_seed)) if torn_seed is not None else 0
            lost = sum(len(n.pending) for n in self.nodes.values())
            return {"cut": True, "lost_ops": lost, "landed_ops": landed}

    def _tear(self, rng: random.Random) -> int:
        landed = 0
        # Directories first: a name that lands makes its file's data worth landing too.
        for ino, saved in list(self.disk.nodes.items()):
            node = self.nodes.get(ino)
            if node is not None and node.kind == "d" and node.children != saved["children"] and rng.random() < 0.5:
                self._sync_dir(node)
                landed += 1
        for node in self.nodes.values():
            if node.kind != "f" or not node.pending or node.ino not in self.disk.nodes:
                continue
            ops = []
            for op in node.pending:
                luck = rng.random()
                if op[0] == "t" or luck < 1 / 3:
                    if op[0] == "w" or luck < 0.5:
                        ops.append(op)  # landed whole
                elif luck < 2 / 3:
                    ops.extend(_sectors(op, rng))  # torn
            if ops:
                self.disk.apply(node.ino, ops)
                landed += len(ops)
        self.disk.save()
        return landed

    def _sync_dir(self, node: Node) -> None:
        self.disk.nodes[node.ino]["children"] = dict(node.children)
        for child in node.children.values():
            self.disk.remember(self.nodes[child])

    # ----- FUSE operations ---------------------------------------------------------

    def init(self, path):
        self.say({"mounted": True})

    def getattr(self, path, fh=None):
        with self._mutex:
            node = self._node(path, fh)
            kind = {"d": stat.S_IFDIR, "l": stat.S_IFLNK}.get(node.kind, stat.S_IFREG)
            return {"st_mode": kind | node.mode, "st_ino": node.ino, "st_nlink": max(node.links, 1),
                    "st_size": len(node.data), "st_uid": os.getuid(), "st_gid": os.getgid(),
                    "st_blocks": (len(node.data) + 511) // 512, "st_blksize": 4096,
                    "st_atime": node.mtime_ns, "st_mtime": node.mtime_ns, "st_ctime": node.mtime_ns}

    def access(self, path, amode):
        with self._mutex:
            self._lookup(path)
        return 0

    def readdir(self, path, fh):
        with self._mutex:
            node = self._lookup(path)
            # With use_ino, an entry whose inode number is 0 is skipped by readdir(3).
            entries = [(".", node), ("..", node)] + [(name, self.nodes[i]) for name, i in node.children.items()]
            kinds = {"d": stat.S_IFDIR, "l": stat.S_IFLNK}
            return [(name, {"st_ino": n.ino, "st_mode": kinds.get(n.kind, stat.S_IFREG)}, 0)
                    for name, n in entries]

    def statfs(self, path):
        with self._mutex:
            total = self.quota if self.quota is not None else 1 << 34
            free = 0 if self.full else max(0, total - self.used())
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": total // 4096, "f_bfree": free // 4096,
                "f_bavail": free // 4096, "f_files": 1 << 20, "f_ffree": 1 << 20, "f_namemax": 255}

    def _new(self, path, mode, kind) -> Node:
        parent, name = self._parent(path)
        if name in parent.children:
            raise _fuse_error(errno.EEXIST)
        node = Node(self.disk.next_ino, kind, mode & 0o7777, links=1)
        self.disk.next_ino += 1
        self.nodes[node.ino] = node
        parent.children[name] = node.ino
        parent.mtime_ns = time.time_ns()
        return node

    def create(self, path, mode, flags=0):
        self._change("create")
        with self._mutex:
            node = self._new(path, mode, "f")
            return self._open_fh(node)

    def mkdir(self, path, mode):
        self._change("mkdir")
        with self._mutex:
            self._new(path, mode, "d")
        return 0

    def symlink(self, target, source):
        """`target` is the new link's path, `source` what it points at (mfusepy's names)."""
        self._change("symlink")
        with self._mutex:
            self._new(target, 0o777, "l").data = bytearray(source.encode())
        return 0

    def readlink(self, path):
        with self._mutex:
            node = self._lookup(path)
            if node.kind != "l":
                raise _fuse_error(errno.EINVAL)
            return node.data.decode()

    def _open_fh(self, node: Node) -> int:
        fh = self.next_fh
        self.next_fh += 1
        self.handles[fh] = node.ino
        return fh

    def open(self, path, flags):
        with self._mutex:
            return self._open_fh(self._lookup(path))

    def opendir(self, path):
        with self._mutex:
            return self._open_fh(self._lookup(path))

    def release(self, path, fh):
        with self._mutex:
            ino = self.handles.pop(fh, None)
            node = self.nodes.get(ino)
            if node is not None and node.links <= 0 and ino not in self.handles.values():
                del self.nodes[ino]
        return 0

    releasedir = release

    def flush(self, path, fh):
        return 0  # close() is not a sync

    def read(self, path, size, offset, fh):
        with self._mutex:
            return bytes(self._node(path, fh).data[offset:offset + size])

    def write(self, path, data, offset, fh):
        self._change("write")
        with self._mutex:
            node = self._node(path, fh)
            grow = max(0, offset + len(data) - len(node.data))
            if self.full or (self.quota is not None and grow and self.used() + grow > self.quota):
                self.stats["enospc"] += 1
                raise _fuse_error(errno.ENOSPC)
            if offset > len(node.data):
                node.data.extend(bytes(offset - len(node.data)))
            node.data[offset:offset + len(data)] = data
            node.pending.append(("w", offset, bytes(data)))
            node.mtime_ns = time.time_ns()
            self.stats["writes"] += 1
            return len(data)

    def truncate(self, path, length, fh=None):
        self._change("truncate")
        with self._mutex:
            node = self._node(path, fh)
            grow = length - len(node.data)
            if grow > 0 and (self.full or (self.quota is not None and self.used() + grow > self.quota)):
                self.stats["enospc"] += 1
                raise _fuse_error(errno.ENOSPC)
            if grow > 0:
                node.data.extend(bytes(grow))
            else:
                del node.data[length:]
            node.pending.append(("t", length))
            node.mtime_ns = time.time_ns()
        return 0

    def fallocate(self, path, mode, offset, size, fh):
        raise _fuse_error(errno.EOPNOTSUPP)

    def fsync(self, path, datasync, fh):
        self._change("fsync")
        with self._mutex:
            node = self._node(path, fh)
            self.disk.remember(node)
            self.disk.apply(node.ino, node.pending)
            node.pending.clear()
            self.disk.save()
            self.stats["fsyncs"] += 1
        return 0

    def fsyncdir(self, path, datasync, fh):
        self._change("fsyncdir")
        with self._mutex:
            node = self._node(path, fh)
            self.disk.remember(node)
            self._sync_dir(node)
            self.disk.save()
            self.stats["dirsyncs"] += 1
        return 0

    def unlink(self, path):
        self._change("unlink")
        with self._mutex:
            parent, name = self._parent(path)
            if name not in parent.children:
                raise _fuse_error(errno.ENOENT)
            self._unlink_node(parent.children.pop(name))
        return 0

    def rmdir(self, path):
        self._change("rmdir")
        with self._mutex:
            parent, name = self._parent(path)
            node = self._lookup(path)
            if node.children:
                raise _fuse_error(errno.ENOTEMPTY)
            self._unlink_node(parent.children.pop(name))
        return 0

    def rename(self, old, new):
        self._change("rename")
        with self._mutex:
            src, old_name = self._parent(old)
            dst, new_name = self._parent(new)
            if old_name not in src.children:
                raise _fuse_error(errno.ENOENT)
            ino = src.children.pop(old_name)
            replaced = dst.children.get(new_name)
            dst.children[new_name] = ino
            if replaced is not None and replaced != ino:
                self._unlink_node(replaced)
        return 0

    def chmod(self, path, mode):
        with self._mutex:
            self._lookup(path).mode = mode & 0o7777
        return 0

    def chown(self, path, uid, gid):
        return 0

    def utimens(self, path, times=None):
        return 0


def _sectors(op: tuple, rng: random.Random) -> list[tuple]:
    """A torn write: a random subset of the write's sectors (aligned to the file's sectors)."""
    _, offset, data = op
    pieces, start = [], offset
    while start < offset + len(data):
        end = min((start // SECTOR + 1) * SECTOR, offset + len(data))
        if rng.random() < 0.5:
            pieces.append(("w", start, data[start - offset:end - offset]))
        start = end
    return pieces


def _control(fs: PowerFS, stream) -> None:
    for line in stream:
        words = line.split()
        if not words:
            continue
        cmd = words[0]
        if cmd == "freeze":
            fs.say(fs.freeze())
        elif cmd == "freeze-after":
            fs.say(fs.freeze(int(words[1])))
        elif cmd == "cut":
            seed = int(words[2]) if len(words) > 2 and words[1] == "torn" else None
            fs.say(fs.cut(seed))
            os._exit(0)  # the power is gone: no unmount, no goodbye
        elif cmd == "quota":
            with fs._mutex:
                fs.quota = None if words[1] == "off" else int(words[1])
                fs.full = fs.full and fs.quota is not None
            fs.say({"quota": fs.quota, "used": fs.used()})
        elif cmd == "full":
            with fs._mutex:
                fs.full = True
            fs.say({"full": True, "used": fs.used()})
        elif cmd == "stats":
            with fs._mutex:
                fs.say({"stats": dict(fs.stats, changes=fs.changes, used=fs.used())})
        else:
            fs.say({"error": f"unknown command {line.strip()!r}"})
    os._exit(0)  # the test went away


def main(argv: list[str] | None = None) -> int:
    import mfusepy

    disk_dir, mountpoint = (argv or sys.argv[1:])[:2]
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    fs = PowerFS(Disk(Path(disk_dir)))
    threading.Thread(target=_control, args=(fs, sys.stdin), daemon=True).start()
    # hard_remove: an unlinked file that is still open keeps working through its handle;
    # use_ino: st_ino is ours. No kernel_cache: every open starts from what we hold.
    mfusepy.FUSE(fs, mountpoint, foreground=True, nothreads=False, hard_remove=True, use_ino=True,
                 fsname="powerfs", subtype="powerfs")
    return 0


# ----------------------------------------------------------------- the test side


def fuse_available() -> str | None:
    """Why this machine cannot run a powerfs (None when it can)."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if os.geteuid() != 0:
        return "mounting needs root here"
    try:
        import mfusepy  # noqa: F401 - loads libfuse3
    except (ImportError, OSError) as exc:
        return f"mfusepy/libfuse3 unavailable ({exc}): `make system-deps` installs fuse3"
    return None


class PowerDisk:
    """A powerfs at `mountpoint` over the durable directory `disk`: mount, freeze, cut, mount again."""

    def __init__(self, disk: Path, mountpoint: Path) -> None:
        from tests.support import Waiter

        self.disk = disk
        self.mountpoint = mountpoint
        self._waiter_type = Waiter
        self.proc: subprocess.Popen | None = None
        self.lines = None
        self.cuts = 0
        self.stderr: list[str] = []

    def mount(self, timeout: float = 15.0) -> None:
        from tests.support import ROOT

        self.disk.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.lines = self._waiter_type(dead=lambda items: bool(items) and "eof" in items[-1])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.powerfs", str(self.disk), str(self.mountpoint)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, cwd=ROOT)
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True).start()
        self.lines.wait_for(lambda items: any("mounted" in r for r in items), timeout, "powerfs mounted")

    @staticmethod
    def _read(proc, lines) -> None:
        for line in proc.stdout:
            lines.append(json.loads(line))
        lines.append({"eof": True})

    def _read_stderr(self, proc) -> None:
        for line in proc.stderr:
            if "max threads" not in line:  # libfuse 3.14 on its own default, harmless
                self.stderr.append(line.rstrip())

    def _ask(self, command: str, key: str, timeout: float = 10.0) -> dict:
        before = len(self.lines.items)
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        found = self.lines.wait_for(lambda items: [r for r in items[before:] if key in r], timeout, key)
        return found[0]

    def freeze(self) -> dict:
        return self._ask("freeze", "frozen")

    def freeze_after(self, changes: int) -> None:
        self._ask(f"freeze-after {changes}", "armed")

    def wait_frozen(self, timeout: float) -> bool:
        try:
            self.lines.wait_for(lambda items: any("frozen" in r for r in items), timeout, "frozen")
            return True
        except AssertionError:
            return False

    def quota(self, size: int | None) -> dict:
        return self._ask(f"quota {'off' if size is None else size}", "quota")

    def fill(self) -> dict:
        """No write succeeds until `quota(None)`, not even one in place."""
        return self._ask("full", "full")

    def stats(self) -> dict:
        return self._ask("stats", "stats")["stats"]

    def cut(self, torn_seed: int | None = None) -> dict:
        """Power off: unsynced state is dropped (or torn), the filesystem process dies, the mount goes."""
        answer = self._ask("cut" if torn_seed is None else f"cut torn {torn_seed}", "cut")
        self.proc.wait(10)
        self._umount()
        self.cuts += 1
        return answer

    def _umount(self) -> None:
        # Lazy: a killed device may still be on its way out of a request that now fails.
        subprocess.run(["umount", "-l", str(self.mountpoint)], check=False, capture_output=True)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._umount()
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        elif self.mountpoint.exists() and os.path.ismount(self.mountpoint):
            self._umount()


def cut_power(disk: PowerDisk, dev, rng: random.Random) -> dict:
    """Fail the power at a seeded moment while `dev` (a DeviceProcess on `disk`) works, then bring
    the filesystem back with only what was durable. `dev` is dead afterwards; restarting it is the caller's."""
    if rng.random() < 0.7:
        # At the N-th change from now: a write or fsync inside a commit, a checkpoint, an ack.
        disk.freeze_after(rng.randint(1, 150))
        if not disk.wait_frozen(timeout=rng.uniform(0.5, 3.0)):
            disk.freeze()  # the device went idle first: cut now
    else:
        threading.Event().wait(rng.uniform(0, 1.0))  # a seeded random moment, not a wait for a condition
        disk.freeze()
    # A device blocked in a frozen write dies only once the filesystem process is gone.
    dev.proc.send_signal(signal.SIGKILL)
    torn = rng.randrange(1 << 30) if rng.random() < 0.5 else None
    answer = disk.cut(torn)
    dev.kill()
    disk.mount()
    return dict(answer, torn=torn is not None)


if __name__ == "__main__":
    sys.exit(main())

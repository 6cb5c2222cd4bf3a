"""Fleet updates on the counter: the decisions, as pure functions over a small state (docs/updates.md).

Layout under the data dir (the only place the service user may write):

    update.json                 the state below, written atomically with fsync
    releases/<version>/         manifest.json, manifest.sig, wheels/, venv/, and `complete` once installed
    releases/current            symlink to the folder of the version to run (absent: the factory install)

    {"format": 1, "committed": V or null, "pending": null or {"version": V, "starts": n},
     "outcome": null or {"version": V, "state": "committed" | "rolled_back" | "refused" | "failed", "error": text}}

`committed` is the last version that proved healthy (null: the factory install in /opt). `pending` is a
version switched to but not yet proven. A power cut at any moment leaves one of these states on disk,
and `plan_boot` (run before every start by the factory install's `hailong device boot`) turns each into a
version to run that is known good or still on probation; the symlink is made to match it, so it never
decides anything by itself.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from common.fsutil import atomic_write, fsync_dir

STATE_FILE = "update.json"
RELEASES = "releases"
CURRENT = "current"
COMPLETE = "complete"
FORMAT = 1
# `hailong device run` exits with this to be started again (systemd's Restart=always, or the test
# supervisor): the next start is the new (or the old) version.
EXIT_RESTART = 75


@dataclass(frozen=True)
class State:
    committed: str | None = None
    pending: str | None = None
    starts: int = 0
    outcome: dict | None = None

    def to_json(self) -> bytes:
        pending = None if self.pending is None else {"version": self.pending, "starts": self.starts}
        return (json.dumps({"format": FORMAT, "committed": self.committed, "pending": pending,
                            "outcome": self.outcome}, indent=1) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> "State":
        obj = json.loads(data.decode("utf-8"))
        pending = obj.get("pending") or {}
        return cls(obj.get("committed"), pending.get("version"), int(pending.get("starts", 0)), obj.get("outcome"))


def load_state(data_dir: Path) -> State:
    """The saved state; a missing file is a fresh counter. An unreadable one (cannot happen with atomic
    writes, but a card can rot) is treated as fresh too: the factory install always works."""
    try:
        return State.from_json((Path(data_dir) / STATE_FILE).read_bytes())
    except FileNotFoundError:
        return State()
    except (OSError, ValueError, TypeError, AttributeError):
        return State(outcome={"version": None, "state": "failed", "error": f"{STATE_FILE} was unreadable"})


def save_state(data_dir: Path, state: State) -> None:
    atomic_write(Path(data_dir) / STATE_FILE, state.to_json(), mode=0o640)


# --- pure decisions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class BootPlan:
    state: State
    run: str | None  # the release to run; None: the factory install
    note: str = ""


def _rolled_back(state: State, why: str) -> State:
    return State(state.committed, None, 0, {"version": state.pending, "state": "rolled_back", "error": why})


def plan_boot(state: State, installed: set[str] | frozenset[str], max_starts: int) -> BootPlan:
    """What to run at this start, and the state to save before running it.

    A pending version gets `max_starts` starts to prove itself; one more means it crash-loops (or hangs
    until the watchdog kills it) and the counter goes back to the committed version. A version whose
    folder is not completely installed is never run.
    """
    if state.pending is not None:
        if state.pending not in installed:
            back = _rolled_back(state, f"release {state.pending} is not installed completely")
            return plan_boot(back, installed, max_starts)
        if state.starts >= max_starts:
            back = _rolled_back(state, f"crash loop: {state.starts} starts without becoming healthy")
            return plan_boot(back, installed, max_starts)
        return BootPlan(replace(state, starts=state.starts + 1), state.pending,
                        f"trying {state.pending} (start {state.starts + 1} of {max_starts})")
    if state.committed is not None and state.committed not in installed:
        # Only a damaged card gets here: the factory install is the last safe place.
        return BootPlan(replace(state, committed=None), None, f"committed release {state.committed} is gone")
    return BootPlan(state, state.committed)


def prepare_boot(data_dir: Path, max_starts: int) -> BootPlan:
    """`plan_boot` on what is on disk, its state saved and the current link made to match: what
    `hailong device boot` does before it becomes the chosen version."""
    state = load_state(data_dir)
    plan = plan_boot(state, installed_versions(data_dir), max_starts)
    if plan.state != state:
        save_state(data_dir, plan.state)
    point_current(data_dir, plan.run)
    return plan


def switch_to(state: State, version: str) -> State:
    """The state to save (with fsync) before the link points at `version` and the counter restarts."""
    return State(state.committed, version, 0, None)


def commit(state: State) -> State:
    return State(state.pending, None, 0, {"version": state.pending, "state": "committed", "error": None})


def roll_back(state: State, why: str) -> State:
    return _rolled_back(state, why)


@dataclass
class Health:
    """Is the pending version healthy? Fed by the runtime; `verdict(now)` decides.

    Healthy: the ledger opened and is readable, MQTT is online, and the service acked an event this
    version stored; on a quiet counter with nothing to ack, online for `quiet_s` is enough. Not
    healthy by `timeout_s` after the start: switch back.
    """

    started: float
    timeout_s: float
    quiet_s: float
    ledger_ok: bool = False
    online_since: float | None = None
    first_seq: int | None = None  # first event this version stored
    acked: bool = False
    stored_any: bool = field(default=False)

    def online(self, up: bool, now: float) -> None:
        self.online_since = (self.online_since or now) if up else None

    def stored(self, seq: int) -> None:
        if self.first_seq is None:
            self.first_seq = seq
        self.stored_any = True

    def acked_seqs(self, seqs) -> None:
        if self.first_seq is not None and any(s >= self.first_seq for s in seqs):
            self.acked = True

    def verdict(self, now: float) -> str | None:
        """"commit", "rollback" or None (keep waiting)."""
        if self.ledger_ok and self.online_since is not None:
            if self.acked or (not self.stored_any and now - self.online_since >= self.quiet_s):
                return "commit"
        if now - self.started >= self.timeout_s:
            return "rollback"
        return None

    def why_not(self) -> str:
        missing = [w for w, ok in (("ledger", self.ledger_ok), ("MQTT online", self.online_since is not None),
                                   ("an acked event", self.acked or not self.stored_any)) if not ok]
        return f"not healthy within {self.timeout_s:g} s (missing: {', '.join(missing) or 'time'})"


# --- the current link ------------------------------------------------------------------------

def releases_dir(data_dir: Path) -> Path:
    return Path(data_dir) / RELEASES


def installed_versions(data_dir: Path) -> frozenset[str]:
    root = releases_dir(data_dir)
    if not root.is_dir():
        return frozenset()
    return frozenset(p.name for p in root.iterdir() if not p.is_symlink() and (p / COMPLETE).is_file())


def point_current(data_dir: Path, version: str | None) -> None:
    """releases/current -> <version> (or no link: the factory install), replaced atomically: a new link
    under a temporary name renamed over the old one, never removed first (`ln -sf` unlinks, then links)."""
    root = releases_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    link = root / CURRENT
    if version is None:
        if link.is_symlink():
            link.unlink()
            fsync_dir(root)
        return
    if link.is_symlink() and os.readlink(link) == version:
        return
    tmp = root / f".{CURRENT}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(version, tmp)  # relative: the data dir may be mounted elsewhere for repairs
    os.replace(tmp, link)
    fsync_dir(root)


def current_link(data_dir: Path) -> str | None:
    link = releases_dir(data_dir) / CURRENT
    return os.readlink(link) if link.is_symlink() else None

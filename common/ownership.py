"""State belongs to the user the service runs as, whoever types the command.

`sudo hailong device doctor` once left /var/lib/hailong/ledger.db owned by root, and the
counter (user hailong) could not write its ledger after that. Before a command creates or
writes state, `claim` makes sure everything it writes will belong to the state's owner:

- the owner is whoever owns the state directory; if it does not exist yet, whoever owns the
  config file (firstboot.sh gives both to the service user);
- run by that user: go on;
- run by root for another owner: become that user (its groups too: gpio, spi, dialout), say so;
- run by anyone else: refuse, saying which user to run as;
- files in the directory that belong to someone else (a root-owned ledger.db left behind) are
  refused too, with the chown that fixes them;
- root never creates the directory for itself while the service user exists: it would be
  root's, and the service could not write into it.
"""
from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path

from common.errors import HailongError

SERVICE_USER = "hailong"


class OwnershipError(HailongError):
    """Going on would leave state that its service cannot write."""


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _service_user_exists() -> bool:
    try:
        pwd.getpwnam(SERVICE_USER)
        return True
    except KeyError:
        return False


def _become(uid: int) -> None:
    user = pwd.getpwuid(uid)
    os.initgroups(user.pw_name, user.pw_gid)
    os.setgid(user.pw_gid)
    os.setuid(uid)
    os.environ["HOME"] = user.pw_dir


def claim(state_dir: str | Path, *, config: str | Path | None = None, command: str = "hailong device",
          switch: bool = True, service: bool = True) -> str | None:
    """Check (and for root, take on) the owner of `state_dir`; returns a note when it switched
    user, raises OwnershipError when going on would leave state its owner cannot write.
    `service=False` for state that is no service's (the technician's inventory)."""
    state_dir = Path(state_dir)
    euid = os.geteuid()
    if state_dir.exists():
        owner = state_dir.stat().st_uid
    elif config is not None and Path(config).exists():
        owner = Path(config).stat().st_uid
    else:
        owner = euid
    if service and owner == 0 and euid == 0 and not state_dir.exists() and _service_user_exists():
        raise OwnershipError(
            f"{state_dir} does not exist, and as root this would create it owned by root, where the "
            f"{SERVICE_USER} service cannot write; create it for the service first: "
            f"sudo install -d -o {SERVICE_USER} -g {SERVICE_USER} -m 0750 {state_dir}")
    note = None
    if owner != euid:
        if euid != 0 or not switch:
            raise OwnershipError(f"{state_dir} belongs to {_name(owner)}, and what this writes there must too: "
                                 f"run it as that user: sudo -u {_name(owner)} {command} ...")
        try:
            user = pwd.getpwuid(owner)
        except KeyError:
            raise OwnershipError(f"{state_dir} belongs to uid {owner}, which has no account here") from None
        if not state_dir.exists():
            state_dir.mkdir(mode=0o750, parents=True)
            os.chown(state_dir, owner, user.pw_gid)
        _become(owner)
        note = f"running as {user.pw_name}, the owner of {state_dir}, so that what it writes stays theirs"
        logging.getLogger("hailong").warning("%s", note)
    if state_dir.is_dir():
        foreign = sorted(p.name for p in state_dir.iterdir() if p.lstat().st_uid != owner)
        if foreign:
            raise OwnershipError(f"{', '.join(foreign)} in {state_dir} belong to another user than "
                                 f"{_name(owner)}, who runs the service and must write them: "
                                 f"sudo chown -R {_name(owner)}: {state_dir}")
    return note

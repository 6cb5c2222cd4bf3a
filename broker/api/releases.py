"""Fleet updates: publish signed releases, serve their files to counters, run rollouts (docs/updates.md).

Publishing and rollouts are an admin's; the files are the counters': `GET /releases/{id}/{file}`
takes HTTP Basic with a device's MQTT account (checked against the broker's passwd file, as
the broker itself checks it), answers Range requests (an interrupted download resumes), and
serves only the files the release's manifest names.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import tempfile
import threading
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.responses import FileResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from pydantic import BaseModel, Field

from broker import fleet
from broker.api.deps import Admin, ClockDep, StoreDep, Viewer
from broker.api.errors import ApiError, api_router, errors, found
from common import release as rel
from common.mqtt_access import read_passwd, verify_password

__all__ = ["router"]

router = api_router("releases")

ReleaseId = Annotated[str, Path(pattern=r"^\d{1,6}(\.\d{1,6}){0,3}-\d+\.\d+-[A-Za-z0-9_]{1,32}$")]
FileName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,200}$")]

_CACHE_LOCK = threading.Lock()
_VERIFIED: dict[tuple[str, str], str] = {}  # (user, sha256 of password) -> the passwd hash it matched


class ReleaseIn(BaseModel):
    """A signed release folder, as JSON: its manifest.json and manifest.sig texts and each wheel in base64."""

    manifest: str = Field(max_length=1 << 20)
    signature: str = Field(max_length=4096)
    files: dict[str, str] = Field(description="wheel file name -> base64 of its bytes")


class RolloutIn(BaseModel):
    """Who gets a release, in how many waves, and the failure rate of a wave that stops the rollout."""

    release: str = Field(pattern=r"^\d{1,6}(\.\d{1,6}){0,3}-\d+\.\d+-[A-Za-z0-9_]{1,32}$")
    site: str | None = Field(None, max_length=64)
    devices: list[str] | None = Field(None, max_length=10000)
    percent: float | None = Field(None, gt=0, le=100)
    waves: int = Field(3, ge=1, le=20)
    threshold: float = Field(0.2, ge=0, le=1, description="stop when more than this share of a wave failed")
    allow_downgrade: bool = False


# A schema-valid body whose files do not match its manifest (or a manifest that is no release) is a
# conflict between the parts of the request, not a malformed request.
_NOT_A_RELEASE = {409: {"model": ApiError, "description": "the files and the manifest do not make a complete "
                                                         "release (a hash or size differs, a file is missing, or "
                                                         "the manifest is not a release manifest)"}}
_DEVICE_AUTH = {401: {"model": ApiError, "description": "no or wrong device credentials (HTTP Basic, the device's "
                                                        "MQTT account)"}}


# Declared as the operation's security (HTTP Basic), checked by `_device` itself so the answer is ours.
_BASIC = HTTPBasic(auto_error=False, realm="hailong", description="a device's MQTT username and password")


def _device(request: Request, credentials: HTTPBasicCredentials | None) -> str:
    """The device whose MQTT account the request's Basic credentials are; 401 otherwise."""
    deny = HTTPException(401, "device credentials needed", headers={"WWW-Authenticate": 'Basic realm="hailong"'})
    if credentials is None:
        raise deny
    user, password = credentials.username, credentials.password
    passwd_file = request.app.state.cfg.mqtt.passwd_file
    hashed = read_passwd(passwd_file).get(user) if passwd_file else None
    if hashed is None:
        raise deny
    key = (user, hashlib.sha256(password.encode()).hexdigest())
    with _CACHE_LOCK:
        known = _VERIFIED.get(key)
    # PBKDF2 on every range request of every counter would be the service's whole CPU: remember successes
    # for as long as the passwd file keeps the same hash (a rotated password is checked afresh).
    if known is not None and hmac.compare_digest(known, hashed):
        return user
    if not verify_password(password, hashed):
        raise deny
    with _CACHE_LOCK:
        _VERIFIED[key] = hashed
    return user


@router.get("/releases")
def releases(_: Viewer, store: StoreDep):
    """Published releases."""
    return {"items": store.releases()}


@router.post("/releases", status_code=201, responses=_NOT_A_RELEASE)
def publish(_: Admin, store: StoreDep, clock: ClockDep, request: Request, body: ReleaseIn):
    """Publish a signed release (the service checks it is complete; only the release key can sign one)."""
    with tempfile.TemporaryDirectory(prefix="hailong-release-") as tmp:
        folder = FsPath(tmp)
        try:
            (folder / rel.MANIFEST).write_text(body.manifest, encoding="utf-8")
            (folder / rel.SIGNATURE).write_text(body.signature, encoding="utf-8")
            for name, data in body.files.items():
                if not rel.FILE_RE.match(name):
                    raise fleet.FleetError(f"{name!r} is not a wheel file name")
                (folder / name).write_bytes(base64.b64decode(data, validate=True))
            return fleet.publish_release(store, folder, fleet.releases_dir(request.app.state.cfg),
                                         at_ms=int(clock() * 1000))
        except (fleet.FleetError, binascii.Error, ValueError) as e:
            raise HTTPException(409, str(e)) from None


@router.get("/releases/{release_id}/{name}", response_class=FileResponse, responses=_DEVICE_AUTH | errors(404))
def release_file(store: StoreDep, request: Request, release_id: ReleaseId, name: FileName,
                 credentials: Annotated[HTTPBasicCredentials | None, Depends(_BASIC)]):
    """A release's file, for a counter (HTTP Basic with its MQTT account; Range requests are answered)."""
    _device(request, credentials)
    found(store.release(release_id), f"release {release_id!r}")
    folder = fleet.releases_dir(request.app.state.cfg) / release_id
    try:
        manifest: dict[str, Any] = json.loads((folder / rel.MANIFEST).read_bytes())
    except FileNotFoundError:
        # Published through another instance whose service.data_dir is not shared with this one.
        raise HTTPException(404, f"release {release_id} is recorded but its files are not on this instance: "
                                 "share service.data_dir/releases between instances or publish it on each "
                                 "(docs/instances.md)") from None
    if name not in (rel.MANIFEST, rel.SIGNATURE, *manifest["files"]):
        raise HTTPException(404, f"release {release_id} has no file {name!r}")
    return FileResponse(folder / name, media_type="application/octet-stream")


# 404: no such release, or no registered device matches the target.
@router.post("/rollouts", status_code=201, responses=errors(404))
def start_rollout(_: Admin, store: StoreDep, clock: ClockDep, body: RolloutIn):
    """Roll a release out to a site, a device list or a share of the fleet, in waves."""
    found(store.release(body.release), f"release {body.release!r}")
    target = {k: v for k, v in (("site", body.site), ("devices", body.devices), ("percent", body.percent))
              if v is not None}
    try:
        members = fleet.members_of(store.devices(), target, body.waves, salt=body.release)
    except fleet.FleetError as e:
        raise HTTPException(404, str(e)) from None
    rid = store.add_rollout(body.release, target, body.waves, body.threshold, body.allow_downgrade, members,
                            int(clock() * 1000))
    return store.rollout(rid)


@router.get("/rollouts")
def rollouts(_: Viewer, store: StoreDep):
    """Every rollout, newest last."""
    return {"items": store.rollouts()}


@router.get("/rollouts/{rollout_id}", responses=errors(404))
def rollout(_: Viewer, store: StoreDep, rollout_id: Annotated[int, Path(ge=1, le=2**62)]):
    """One rollout with each device's wave and state."""
    return found(store.rollout(rollout_id), f"rollout {rollout_id}")


@router.post("/rollouts/{rollout_id}/stop", responses=errors(404))
def stop_rollout(_: Admin, store: StoreDep, clock: ClockDep, rollout_id: Annotated[int, Path(ge=1, le=2**62)]):
    """Stop a rollout: no more devices get the release (those that have it keep it)."""
    r = found(store.rollout(rollout_id), f"rollout {rollout_id}")
    if r["state"] == "running":
        store.save_rollout_step(rollout_id, state="stopped", wave=r["wave"], reason="stopped by an operator",
                                devices={}, at_ms=int(clock() * 1000))
    return store.rollout(rollout_id)

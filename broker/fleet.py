"""Fleet updates on the service: publishing a signed release, and rollouts in waves (docs/updates.md).

The service only relays: it checks that a release folder is complete (each file's hash matches its
manifest) but cannot make or alter a release a counter accepts, since the counters verify the
manifest's Ed25519 signature with the release key's public half, which the service never holds
the private half of.

A rollout's decisions are pure (`members_of`, `step`): which devices, in which wave (a hash of the
rollout's release and the device id, so waves are stable and spread), when to send, when a wave is
over, and when its failure rate stops the rollout. `tick` applies them to the store and MQTT.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from common import release as rel
from common.errors import HailongError
from protocol.messages import make_command

FINISHED = ("committed", "failed")
# A command published while a counter's subscription is not in place yet is lost (QoS 1 keeps it only for
# a session that exists): one sent this long ago without any report is sent again.
RESEND_MS = 120_000
FAILED_STATES = ("rolled_back", "refused", "failed")


class FleetError(HailongError, ValueError):
    """A release or rollout that cannot be published or started; the message says why."""


def releases_dir(cfg) -> Path:
    return Path(cfg.service.data_dir) / "releases"


def base_url(cfg) -> str:
    return (cfg.http.public_url or f"http://{cfg.http.host}:{cfg.http.port}").rstrip("/")


def release_url(cfg, rid: str) -> str:
    return f"{base_url(cfg)}/api/v1/releases/{rid}/"


def publish_release(store, folder: Path, target: Path, *, at_ms: int, public_key: bytes | None = None) -> dict:
    """Copy a signed release folder into `target`/<id> and record it; FleetError if it is incomplete."""
    folder = Path(folder)
    try:
        data, signature = (folder / rel.MANIFEST).read_bytes(), (folder / rel.SIGNATURE).read_bytes()
        manifest = rel.check_manifest(json.loads(data))
        if public_key is not None:
            rel.verify_manifest(data, signature, public_key, running=None, python=manifest["python"],
                                arch=manifest["arch"])
        rel.check_files(manifest, folder)
    except (OSError, ValueError, rel.ReleaseError) as e:
        raise FleetError(f"{folder}: not a complete signed release: {e}") from None
    rid = f"{manifest['version']}-{manifest['python']}-{manifest['arch']}"
    target.mkdir(parents=True, exist_ok=True)
    tmp, old = target / f".{rid}.new", target / f".{rid}.old"
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir()
    for name in (*manifest["files"], rel.MANIFEST, rel.SIGNATURE):
        shutil.copyfile(folder / name, tmp / name)
    if (target / rid).exists():
        (target / rid).rename(old)
    tmp.rename(target / rid)  # counters never see a half-copied folder
    shutil.rmtree(old, ignore_errors=True)
    size = sum(f["size"] for f in manifest["files"].values())
    store.add_release(rid, manifest["version"], manifest["python"], manifest["arch"], signature.decode().strip(),
                      len(manifest["files"]), size, at_ms)
    return store.release(rid)


def update_command(release: dict, url: str, allow_downgrade: bool = False) -> dict:
    fields = {"version": release["version"], "url": url, "signature": release["signature"]}
    if allow_downgrade:
        fields["allow_downgrade"] = True
    return make_command("update", **fields)


# --- rollouts (pure) ------------------------------------------------------------------------------

def _spread(salt: str, device: str) -> float:
    return int(hashlib.sha256(f"{salt}\n{device}".encode()).hexdigest()[:12], 16) / 16 ** 12


def members_of(devices: list[dict], target: dict, waves: int, salt: str) -> dict[str, int]:
    """{device: wave} for a target {"site": S} and/or {"devices": [...]} and/or {"percent": P}."""
    chosen = [d["device"] for d in devices if d.get("registered")]
    if target.get("site"):
        chosen = [d["device"] for d in devices if d["device"] in chosen and d.get("site") == target["site"]]
    if target.get("devices"):
        wanted = set(target["devices"])
        chosen = [d for d in chosen if d in wanted]
    if target.get("percent") is not None:
        chosen = [d for d in chosen if _spread(salt, d) < target["percent"] / 100]
    if not chosen:
        raise FleetError(f"the target {target} names no registered device")
    ordered = sorted(chosen, key=lambda d: _spread(salt, d))
    return {d: min(i * waves // len(ordered), waves - 1) for i, d in enumerate(ordered)}


def device_outcome(version: str, device: dict | None) -> tuple[str, str | None] | None:
    """("committed" | "failed", error) once `device` reports on `version`; None while it has not."""
    if device is None:
        return None
    update = (device.get("last_telemetry") or {}).get("update") or {}
    if update.get("version") == version:
        if update.get("state") == "committed":
            return "committed", None
        if update.get("state") in FAILED_STATES:
            return "failed", f"{update['state']}: {update.get('error')}"
    return None


def step(rollout: dict, version: str, devices: dict[str, dict], now_ms: int = 0) -> tuple[dict, list[str]]:
    """One look at a running rollout: ({"state", "wave", "reason", "changes": {device: (state, error)}},
    devices to send the update command to now)."""
    wave, changes, send = rollout["wave"], {}, []
    for m in rollout["devices"]:
        if m["wave"] != wave:
            continue
        state = m["state"]
        if state == "waiting" and (devices.get(m["device"]) or {}).get("online"):
            send.append(m["device"])
            changes[m["device"]] = ("sent", None)
        elif state == "sent":
            outcome = device_outcome(version, devices.get(m["device"]))
            if outcome is not None:
                changes[m["device"]] = outcome
            elif now_ms - m.get("updated_ms", now_ms) >= RESEND_MS:
                send.append(m["device"])
                changes[m["device"]] = ("sent", None)
    now = {m["device"]: changes.get(m["device"], (m["state"], m["error"]))[0]
           for m in rollout["devices"] if m["wave"] == wave}
    result = {"state": "running", "wave": wave, "reason": None, "changes": changes}
    if now and all(s in FINISHED for s in now.values()):
        failed = sum(s == "failed" for s in now.values())
        if failed / len(now) > rollout["threshold"]:
            result.update(state="stopped", reason=f"wave {wave + 1}: {failed} of {len(now)} devices failed, above "
                                                  f"the threshold {rollout['threshold']:.0%}")
        elif wave + 1 >= rollout["waves"]:
            result.update(state="done")
        else:
            result.update(wave=wave + 1)
    return result, send


def tick(store, ingest, cfg, now_ms: int) -> None:
    """Advance every running rollout by one step (the service calls this every few seconds)."""
    devices = {d["device"]: d for d in store.devices()}
    for summary in store.rollouts(running_only=True):
        rollout = store.rollout(summary["id"])
        release = store.release(rollout["release"])
        result, send = step(rollout, release["version"], devices, now_ms)
        if not (result["changes"] or result["state"] != "running" or result["wave"] != rollout["wave"]):
            continue
        # Saved before sending, and only if nobody stepped the rollout since we read it (another
        # instance, an operator's stop): each command is sent by one instance. Dying before sending
        # only delays it by RESEND_MS.
        if store.save_rollout_step(rollout["id"], state=result["state"], wave=result["wave"], reason=result["reason"],
                                   devices=result["changes"], at_ms=now_ms, if_updated_ms=rollout["updated_ms"]):
            command = update_command(release, release_url(cfg, release["id"]), rollout["allow_downgrade"])
            for device in send:
                ingest.publish(device, "cmd", command)

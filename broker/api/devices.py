"""Devices and what is sent to them: the device list, registration, assignments, display and identify."""
from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path
from fastapi.responses import JSONResponse

from broker import actions
from broker.api.answers import Assigned, DeviceList, Sent, ok
from broker.api.bodies import DEVICE_PATTERN, AssignmentIn, DeviceIn, DisplayIn, IdentifyIn
from broker.api.deps import API, ClockDep, IngestDep, Scope, SiteAdmin, SiteManager, SiteViewer, StoreDep
from broker.api.errors import NOT_SENT, api_router, errors, found

__all__ = ["router"]

router = api_router("devices")

DeviceId = Annotated[str, Path(pattern=DEVICE_PATTERN, examples=["hcm-q1-c03"])]


@router.get("/devices", responses=ok(DeviceList))
def devices(scope: SiteViewer, store: StoreDep):
    """Devices at the caller's sites (a device known only by its id, at no site yet: province-wide callers)."""
    return {"items": scope.only(store.devices())}


def _device(scope: Scope, store, device_id: str) -> dict:
    """The device if it is at one of the caller's sites; else 404, as for one that does not exist."""
    found_ = store.device(device_id)
    if found_ is None or not scope.sees(found_["site"]):
        raise HTTPException(404, f"no such device {device_id!r}")
    return found_


@router.put("/devices/{device_id}", responses=errors(404))
def register_device(scope: SiteAdmin, store: StoreDep, device_id: DeviceId, body: DeviceIn):
    """Say which site and counter a device serves."""
    scope.site(body.site)
    if store.device(device_id) is not None:
        _device(scope, store, device_id)  # not another site's device
    store.register_device(device_id, body.site, body.counter)
    return found(store.device(device_id), f"device {device_id!r}")


@router.post("/assignments", responses=ok(Assigned) | errors(404) | NOT_SENT)
def assign(scope: SiteManager, store: StoreDep, ingest: IngestDep, clock: ClockDep, body: AssignmentIn):
    """Put an officer (or nobody) at a counter: recorded, then sent to the counter's device (retained)."""
    scope.site(body.site, f"counter {body.site}/{body.counter}")
    seen = store.officers_seen(scope.sites)
    if body.officer is not None and seen is not None and body.officer not in seen:
        raise HTTPException(404, f"no such officer {body.officer!r} (add it under {API}/officers first)")
    at = body.at if body.at is not None else int(clock() * 1000)
    try:
        result = actions.assign_officer(store, ingest, site=body.site, counter=body.counter, officer=body.officer,
                                        at_ms=at)
    except actions.NotFound as e:
        raise HTTPException(404, f"{e} (add it under {API}/officers first)") from None
    except actions.NotShowable as e:
        raise HTTPException(422, str(e)) from None
    if not result["published"]:
        return JSONResponse({"detail": f"recorded, but not sent: counter {body.site}/{body.counter} has no "
                                       "device yet; assign again once its device is registered", **result},
                            status_code=409)
    return result


def _sent(send, *args) -> dict:
    try:
        return send(*args)
    except actions.NotFound as e:
        raise HTTPException(404, str(e)) from None


@router.post("/devices/{device_id}/display", status_code=202, responses=ok(Sent, 202) | errors(404))
def display(scope: SiteManager, store: StoreDep, ingest: IngestDep, device_id: DeviceId, body: DisplayIn):
    """Show a ticket number on the counter's display (for a third-party queue system)."""
    _device(scope, store, device_id)
    return _sent(actions.display_ticket, store, ingest, device_id, body.ticket)


@router.post("/devices/{device_id}/identify", status_code=202, responses=ok(Sent, 202) | errors(404))
def identify(scope: SiteManager, store: StoreDep, ingest: IngestDep, device_id: DeviceId, body: IdentifyIn):
    """Blink the counter for `seconds`, to find it on the floor."""
    _device(scope, store, device_id)
    return _sent(actions.identify_device, store, ingest, device_id, body.seconds)

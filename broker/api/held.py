"""Held events: what devices the registry does not vouch for sent; an admin approves or discards them.

Only a device registered at the counter its events name counts (docs/store.md, "Only known
devices count"); the others' events are stored, acked and held. `GET /held` lists them,
`POST /devices/{id}/approve` registers the device there and counts them, `POST
/devices/{id}/discard` keeps them out of every figure for good.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import HTTPException, Path
from pydantic import BaseModel

from broker import actions
from broker.api.bodies import DEVICE_PATTERN, Id64
from broker.api.deps import ClockDep, Scope, SiteAdmin, SiteViewer, StoreDep
from broker.api.errors import api_router, errors
from broker.store import Ambiguous, NothingHeld

__all__ = ["router"]

# 401, 403 and 422 are declared by the router from each route's role and inputs.
router = api_router("devices")

DeviceId = Annotated[str, Path(pattern=DEVICE_PATTERN)]


class HeldChoice(BaseModel):
    """Which of the device's held events: those naming this site and counter. Without a body: all of them.

    Both fields are required, so the document says what the store enforces (a site alone names no counter).
    """

    site: Id64
    counter: Id64


def _decided(decide, *args) -> dict:
    try:
        return decide(*args)
    except NothingHeld as e:
        raise HTTPException(404, str(e)) from None
    except Ambiguous as e:  # a ValueError too: caught first
        raise HTTPException(409, str(e)) from None
    except ValueError as e:
        raise HTTPException(422, str(e)) from None


@router.get("/held")
def held(scope: SiteViewer, store: StoreDep):
    """Devices whose events wait for an admin, one item per device and the site and counter they name."""
    return {"items": scope.only(store.held_devices())}


def _mine(scope: Scope, store, device_id: str, body: HeldChoice | None) -> tuple[str | None, str | None]:
    """(site, counter) of the choice, if the caller sees every site it touches: the held events chosen
    and where the device is registered now (approving moves it). Else 404, as if nothing were held."""
    claims = [h for h in store.held_devices() if h["device"] == device_id
              and (body is None or (h["site"], h["counter"]) == (body.site, body.counter))]
    device = store.device(device_id)
    touched = {h["site"] for h in claims} | {device["site"] for device in [device] if device and device["site"]}
    if not all(scope.sees(site) for site in touched) or (body is not None and not scope.sees(body.site)):
        raise HTTPException(404, f"nothing held from device {device_id!r}")
    return (body.site, body.counter) if body else (None, None)


# 404: nothing from the device is held (naming that site and counter, if given);
# 409: its held events name several counters, choose one.
@router.post("/devices/{device_id}/approve", responses=errors(404, 409))
def approve(scope: SiteAdmin, store: StoreDep, device_id: DeviceId, body: HeldChoice | None = None):
    """Register the device at the counter its held events name and count them; it replaces the device there."""
    site, counter = _mine(scope, store, device_id, body)
    return _decided(actions.approve_held, store, device_id, site, counter)


@router.post("/devices/{device_id}/discard", responses=errors(404))
def discard(scope: SiteAdmin, store: StoreDep, clock: ClockDep, device_id: DeviceId, body: HeldChoice | None = None):
    """Never count the device's held events (only those naming site and counter, if given); kept for audit."""
    site, counter = _mine(scope, store, device_id, body)
    return _decided(actions.discard_held, store, device_id, int(clock() * 1000), site, counter)

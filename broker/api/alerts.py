"""Alerts and opening hours: list alerts, acknowledge one, read and set a site's hours and recipients.

`GET /alerts?state=open|all&from=&to=` for any role; acknowledging is a manager's (the name
of the caller is kept with the time), as is setting a site's opening hours, closed days and
e-mail recipients (docs/alerts.md).
"""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from broker.alerts.hours import DAYS, Hours, MAX_CLOSED
from broker.api.bodies import Key
from broker.api.deps import ClockDep, SettingsDep, SiteManager, SiteViewer, StoreDep
from broker.api.errors import api_router, errors, found
from broker.api.figures import _INSTANT, _instant

__all__ = ["EMAIL_PATTERN", "RANGE_PATTERN", "default_hours_of", "hours_view", "router"]

router = api_router("alerts")

SiteKey = Key(Path, examples=["hcm-q1"])
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9]"
RANGE_PATTERN = f"^{_TIME}-(?:{_TIME}|24:00)$"
# No line breaks: it goes in a header. Explicit classes, not \s: Python's \s holds U+0085, the
# JSON Schema (ECMA) one does not, and the document must mean what the server checks.
EMAIL_PATTERN = "^[^@ \\x00-\\x1f\\x7f]{1,64}@[^@ \\x00-\\x1f\\x7f]{1,188}$"
Range = Annotated[str, Field(pattern=RANGE_PATTERN, max_length=11, examples=["07:30-11:30"],
                             description="HH:MM-HH:MM, ending after it starts; a day's ranges may not overlap")]
Day = Annotated[str, Field(max_length=10, examples=["2027-02-06"], json_schema_extra={"format": "date"})]
Email = Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=254, examples=["truong.phong@example.gov.vn"])]
Since = Annotated[str | None, Query(alias="from", max_length=40, json_schema_extra=_INSTANT,
                                    description="opened at or after: ms, YYYY-MM-DD (its start) or ISO date-time")]
Until = Annotated[str | None, Query(alias="to", max_length=40, json_schema_extra=_INSTANT,
                                    description="opened before (exclusive; a day counts whole)")]


class HoursIn(BaseModel):
    """A site's opening hours per weekday (days left out are closed), its closed dates and its alert recipients."""

    weekly: dict[Literal[DAYS], Annotated[list[Range], Field(max_length=12)]] = Field(  # type: ignore[valid-type]
        default_factory=dict, examples=[{"mon": ["07:30-11:30", "13:30-17:00"], "sat": ["07:30-11:30"]}])
    closed: list[Day] = Field(default_factory=list, max_length=MAX_CLOSED, examples=[["2027-02-06"]])
    email_to: list[Email] = Field(default_factory=list, max_length=50)


def hours_view(store, site: str, default_text: str) -> dict:
    """The site's hours as the API and the dashboard show them; `default` says they are the service's default."""
    own = store.site_hours(site)
    hours = Hours.from_json(own["hours"]) if own else Hours.from_text(default_text)
    return {"site": site, "default": own is None, **hours.to_json(), "text": hours.to_text(),
            "email_to": own["email_to"] if own else [], "updated_ms": own and own["updated_ms"],
            "updated_by": own and own["updated_by"]}


def default_hours_of(request: Request) -> str:
    """The service's alerts.default_hours (the built-in default for a config without alerts)."""
    from broker.alerts.settings import DEFAULT_HOURS

    return getattr(getattr(request.app.state.cfg, "alerts", None), "default_hours", DEFAULT_HOURS)


DefaultHours = Annotated[str, Depends(default_hours_of)]


@router.get("/alerts")
def list_alerts(scope: SiteViewer, store: StoreDep, settings: SettingsDep,
                state: Annotated[Literal["open", "all"], Query()] = "open", since: Since = None,
                until: Until = None):
    """Alerts, newest first: `open` ones (default) or `all`, opened within from..to if given."""
    first = _instant(since, "from", settings.tz, end=False)
    last = _instant(until, "to", settings.tz, end=True)
    return {"items": store.alerts(state, first, last, sites=scope.sites), "open": store.open_alert_count(scope.sites)}


@router.post("/alerts/{alert_id}/ack", responses=errors(404))
def ack_alert(scope: SiteManager, store: StoreDep, clock: ClockDep,
              alert_id: Annotated[int, Path(ge=1, le=2**53)]):
    """Acknowledge an alert: who and when are kept; the first acknowledgement stands."""
    alert = found(store.alert(alert_id), f"alert {alert_id}")
    if not scope.sees(alert["site"]):  # another site's (or a service-wide one, for a scoped caller)
        raise HTTPException(404, f"no such alert {alert_id}")
    who = scope.who
    return found(store.ack_alert(alert_id, who.name, int(clock() * 1000)), f"alert {alert_id}")


@router.get("/sites/{site_id}/hours", responses=errors(404))
def get_hours(scope: SiteViewer, store: StoreDep, default: DefaultHours, site_id: SiteKey):
    """The site's opening hours (the service's default until set), closed days and alert recipients."""
    found(store.site(scope.site(site_id)), f"site {site_id!r}")
    return hours_view(store, site_id, default)


@router.put("/sites/{site_id}/hours", responses=errors(404))
def put_hours(scope: SiteManager, store: StoreDep, clock: ClockDep, site_id: SiteKey, body: HoursIn):
    """Set the site's opening hours, closed days (public holidays, Tết) and alert e-mail recipients."""
    who = scope.who
    found(store.site(scope.site(site_id)), f"site {site_id!r}")
    try:
        hours = Hours.from_json({"weekly": body.weekly, "closed": body.closed})
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    store.set_site_hours(site_id, hours.to_json(), body.email_to, int(clock() * 1000), who.name)
    return hours_view(store, site_id, "")

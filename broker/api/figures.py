"""Figures and history: satisfaction, the monthly report files, low-rating reasons, events, dead letters."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response

from broker.api.deps import API, ClockDep, Manager, SettingsDep, StoreDep, Viewer
from broker.reports import satisfaction_csv, satisfaction_xlsx
from common.periods import month_range, zone

__all__ = ["router"]

MAX_PAGE = 1000
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

router = APIRouter(prefix=API, tags=["figures"])

Group = Literal["officer", "counter", "site"]
ReportGroup = Annotated[Literal["officer", "counter"], Query(description="rows per officer or counter")]
Month = Annotated[str, Query(description="the month, YYYY-MM (site-local days)")]
OnlySite = Annotated[str | None, Query(description="only this site")]
DateFrom = Annotated[str, Query(alias="from", description="first day, YYYY-MM-DD, site-local")]
DateTo = Annotated[str, Query(alias="to", description="last day, inclusive")]


# ----- reading the query ----------------------------------------------------------------------


def _day(text: str, name: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise HTTPException(422, f"{name}: expected a date YYYY-MM-DD, got {text!r}") from None


def _days(date_from: str, date_to: str) -> tuple[str, str]:
    """The period from..to as checked YYYY-MM-DD days; 422 if it is not one."""
    first, last = _day(date_from, "from"), _day(date_to, "to")
    if first > last:
        raise HTTPException(422, f"from ({first}) is after to ({last})")
    return first.isoformat(), last.isoformat()


def _instant(text: str | None, name: str, tz: str, *, end: bool) -> int | None:
    """ms since epoch from ms digits, an ISO date-time, or a day: its start, or for `end` the next day's start.

    The store's upper bound is exclusive, so `until=2024-11-27` covers all of that day.
    """
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        if len(text) == 10:
            day = datetime.combine(date.fromisoformat(text), datetime.min.time(), zone(tz))
            moment = day + timedelta(days=1) if end else day
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone(tz))
    except ValueError:
        raise HTTPException(422, f"{name}: expected ms since epoch, YYYY-MM-DD or an ISO date-time, "
                                 f"got {text!r}") from None
    return int(moment.timestamp() * 1000)


def _satisfaction(store, settings, group: str, first: str, last: str, site: str | None) -> dict:
    try:
        return store.satisfaction(group, first, last, site=site, satisfied_from=settings.satisfied_from)
    except ValueError as e:  # e.g. service.satisfied_from above this period's scale
        raise HTTPException(422, str(e)) from None


# ----- satisfaction ------------------------------------------------------------------------------


@router.get("/satisfaction")
def satisfaction(
    _: Viewer, store: StoreDep, settings: SettingsDep,
    group: Annotated[Group, Query(description="rows per officer, counter or site")],
    date_from: DateFrom, date_to: DateTo, site: OnlySite = None,
):
    """Ratings, satisfied share (`rate`, 0-1), mean, index (0-100) and Wilson lower bound per row."""
    first, last = _days(date_from, date_to)
    return _satisfaction(store, settings, group, first, last, site)


# ----- monthly report files (broker/reports.py builds them from the satisfaction dict) ------


def _month_report(store, settings, group: str, month: str, site: str | None) -> dict:
    try:
        first, last = month_range(month)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    # the very call GET /satisfaction makes for from=first, to=last
    return _satisfaction(store, settings, group, first.isoformat(), last.isoformat(), site)


def _attachment(body: bytes, media_type: str, group: str, month: str, ext: str) -> Response:
    name = f"hailong-satisfaction-{group}-{month}.{ext}"
    return Response(body, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


@router.get("/reports/satisfaction.xlsx", response_class=Response,
            responses={200: {"content": {XLSX: {}}, "description": "an Excel workbook"}})
def satisfaction_report_xlsx(_: Viewer, store: StoreDep, settings: SettingsDep, clock: ClockDep,
                             group: ReportGroup, month: Month, site: OnlySite = None):
    """The month's satisfaction figures as an Excel workbook (Vietnamese headings, a totals row)."""
    report = _month_report(store, settings, group, month, site)
    site_name = None if site is None else ((store.site(site) or {}).get("name") or site)
    body = satisfaction_xlsx(report, centre=settings.centre, group=group, month=month,
                             generated_at=datetime.fromtimestamp(clock(), zone(settings.tz)), site=site_name)
    return _attachment(body, XLSX, group, month, "xlsx")


@router.get("/reports/satisfaction.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "UTF-8 CSV with a BOM"}})
def satisfaction_report_csv(_: Viewer, store: StoreDep, settings: SettingsDep,
                            group: ReportGroup, month: Month, site: OnlySite = None):
    """The month's satisfaction figures as CSV: UTF-8 with a BOM, CRLF, rates as fractions."""
    report = _month_report(store, settings, group, month, site)
    body = satisfaction_csv(report, centre=settings.centre, group=group, month=month)
    return _attachment(body, "text/csv; charset=utf-8", group, month, "csv")


# ----- reasons, events, dead letters --------------------------------------------------------


@router.get("/reasons")
def reasons(
    _: Viewer, store: StoreDep,
    officer: Annotated[str, Query(description="officer id; empty for unattributed ratings")],
    date_from: DateFrom, date_to: DateTo,
):
    """Reasons citizens chose after a low rating for this officer, most frequent first."""
    first, last = _days(date_from, date_to)
    return {"officer": officer or None, "items": store.low_reasons(officer or None, first, last)}


@router.get("/events")
def events(
    _: Viewer, store: StoreDep, settings: SettingsDep,
    device: str | None = None, site: str | None = None, counter: str | None = None,
    officer: str | None = None,
    type: Annotated[Literal["rating", "call", "signin", "signout"] | None, Query()] = None,
    since: Annotated[str | None, Query(description="ms, YYYY-MM-DD (its start) or ISO date-time")] = None,
    until: Annotated[str | None, Query(description="exclusive: ms or ISO date-time; "
                                                   "a YYYY-MM-DD includes that day")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[int | None, Query(ge=0, description="the `next` of the previous page")] = None,
):
    """Stored events in storage order, a page at a time: pass `next` back as `after`."""
    days_in = (store.site(site) or {}).get("tz", settings.tz) if site is not None else settings.tz
    rows = store.events(device=device, site=site, counter=counter, officer=officer, type=type,
                        since_ms=_instant(since, "since", days_in, end=False),
                        until_ms=_instant(until, "until", days_in, end=True),
                        limit=limit + 1, after_id=after)
    page = rows[:limit]
    return {"items": page, "next": page[-1]["id"] if len(rows) > limit else None}


@router.get("/dead-letters")
def dead_letters(_: Manager, store: StoreDep,
                 limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
                 offset: Annotated[int, Query(ge=0)] = 0):
    return {"items": store.dead_letters(limit, offset), "limit": limit, "offset": offset}

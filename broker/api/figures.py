"""Figures and history: satisfaction, the monthly report files, low-rating reasons, events, dead letters."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import HTTPException, Query, Response

from broker.api.answers import DeadLetterPage, EventPage, ReasonList, Satisfaction, ok
from broker.api.deps import ClockDep, Manager, SettingsDep, SiteViewer, StoreDep
from broker.api.errors import api_router
from broker import waiting
from broker.reports import satisfaction_csv, satisfaction_xlsx
from common.periods import month_range, zone
from protocol.codec import MAX_INT

__all__ = ["router"]

MAX_PAGE = 1000
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

router = api_router("figures")

# What the code below accepts, as the document says it: the code checks with its own
# messages ("from: expected a date YYYY-MM-DD, got '2024-02-30'"), so the rules are written
# into the schema (json_schema_extra) rather than left to FastAPI's generic pattern errors.
_MS = "^[0-9]{1,15}$"  # up to 15 digits: year 33658, inside every integer type the service uses
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MONTH = "^(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])-(?:0[1-9]|1[0-2])$"  # 0001-01 .. 9999-12
_INSTANT = {"anyOf": [{"type": "string", "pattern": _MS}, {"type": "string", "format": "date"},
                      {"type": "string", "format": "date-time"}]}

Group = Literal["officer", "counter", "site"]
ReportGroup = Annotated[Literal["officer", "counter", "site"], Query(description="rows per officer, counter or site")]
Month = Annotated[str, Query(description="the month, YYYY-MM (site-local days)", examples=["2026-11"],
                             json_schema_extra={"pattern": _MONTH})]
Id = Annotated[str | None, Query(max_length=64)]
OnlySite = Annotated[str | None, Query(max_length=64, description="only this site")]
DateFrom = Annotated[str, Query(alias="from", description="first day, YYYY-MM-DD, site-local",
                                examples=["2026-11-01"], json_schema_extra={"format": "date"})]
DateTo = Annotated[str, Query(alias="to", description="last day, inclusive; not before `from`",
                              examples=["2026-11-30"], json_schema_extra={"format": "date"})]


# ----- reading the query ----------------------------------------------------------------------


def _day(text: str, name: str) -> date:
    try:
        if not _DAY_RE.fullmatch(text):  # fromisoformat alone would take week dates (2024-W01-1)
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
    if re.fullmatch(_MS, text):
        return int(text)
    try:
        if _DAY_RE.fullmatch(text):
            start = datetime.combine(date.fromisoformat(text), datetime.min.time(), zone(tz))
            return _ms(start) if not end else _next_day_ms(start)
        if len(text) > 10:
            moment = datetime.fromisoformat(text.upper())  # RFC 3339 allows a lower-case t and z
            return _ms(moment if moment.tzinfo is not None else moment.replace(tzinfo=zone(tz)))
    except ValueError:
        pass
    raise HTTPException(422, f"{name}: expected ms since epoch (up to 15 digits), YYYY-MM-DD or an ISO "
                             f"date-time, got {text!r}")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _next_day_ms(start: datetime) -> int:
    try:
        return _ms(start + timedelta(days=1))  # a local day: 23 or 25 hours across a DST change
    except OverflowError:  # the day after 9999-12-31 is beyond datetime, not beyond ms
        return _ms(start) + 86_400_000


def _satisfaction(store, settings, group: str, first: str, last: str, sites: frozenset[str] | None) -> dict:
    try:
        return store.satisfaction(group, first, last, sites=sites, satisfied_from=settings.satisfied_from)
    except ValueError as e:  # e.g. service.satisfied_from above this period's scale
        raise HTTPException(422, str(e)) from None


# ----- satisfaction ------------------------------------------------------------------------------


@router.get("/satisfaction", responses=ok(Satisfaction))
def satisfaction(
    scope: SiteViewer, store: StoreDep, settings: SettingsDep,
    group: Annotated[Group, Query(description="rows per officer, counter or site")],
    date_from: DateFrom, date_to: DateTo, site: OnlySite = None,
):
    """Ratings, satisfied share (`rate`, 0-1), mean, index (0-100) and Wilson lower bound per row.

    Only the caller's sites count: a principal limited to one site sees its officers' ratings there."""
    first, last = _days(date_from, date_to)
    return _satisfaction(store, settings, group, first, last, scope.narrow(site))


# ----- monthly report files (broker/reports.py builds them from the satisfaction dict) ------


def _month_report(store, settings, group: str, month: str, sites: frozenset[str] | None) -> dict:
    try:
        first, last = month_range(month)
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    # the very call GET /satisfaction makes for from=first, to=last
    report = _satisfaction(store, settings, group, first.isoformat(), last.isoformat(), sites)
    # The waiting columns: the month's queue tickets, named as GET /waiting names them.
    tickets = store.ticket_times(first.isoformat(), last.isoformat(), sites=sites)
    names = {r["key"] or None: r["name"]
             for r in store.waiting_stats(group, first.isoformat(), last.isoformat(), sites=sites)}
    return waiting.with_waiting(report, tickets, group, names)


def _shown_site(store, scope, site: str | None) -> str | None:
    """The site the report is about, by name: the one asked for, or a scoped caller's only one."""
    if site is None and scope.sites is not None and len(scope.sites) == 1:
        (site,) = scope.sites
    return None if site is None else ((store.site(site) or {}).get("name") or site)


def _attachment(body: bytes, media_type: str, group: str, month: str, ext: str) -> Response:
    name = f"hailong-satisfaction-{group}-{month}.{ext}"
    return Response(body, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


@router.get("/reports/satisfaction.xlsx", response_class=Response,
            responses={200: {"content": {XLSX: {}}, "description": "an Excel workbook"}})
def satisfaction_report_xlsx(scope: SiteViewer, store: StoreDep, settings: SettingsDep, clock: ClockDep,
                             group: ReportGroup, month: Month, site: OnlySite = None):
    """The month's satisfaction figures as an Excel workbook (Vietnamese headings, a totals row)."""
    report = _month_report(store, settings, group, month, scope.narrow(site))
    site_name = _shown_site(store, scope, site)
    body = satisfaction_xlsx(report, centre=settings.centre, group=group, month=month,
                             generated_at=datetime.fromtimestamp(clock(), zone(settings.tz)), site=site_name)
    return _attachment(body, XLSX, group, month, "xlsx")


@router.get("/reports/satisfaction.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}, "description": "UTF-8 CSV with a BOM"}})
def satisfaction_report_csv(scope: SiteViewer, store: StoreDep, settings: SettingsDep,
                            group: ReportGroup, month: Month, site: OnlySite = None):
    """The month's satisfaction figures as CSV: UTF-8 with a BOM, CRLF, rates as fractions."""
    report = _month_report(store, settings, group, month, scope.narrow(site))
    body = satisfaction_csv(report, centre=settings.centre, group=group, month=month)
    return _attachment(body, "text/csv; charset=utf-8", group, month, "csv")


# ----- reasons, events, dead letters --------------------------------------------------------


@router.get("/reasons", responses=ok(ReasonList))
def reasons(
    scope: SiteViewer, store: StoreDep,
    officer: Annotated[str, Query(max_length=64, description="officer id; empty for unattributed ratings")],
    date_from: DateFrom, date_to: DateTo,
):
    """Reasons citizens chose after a low rating for this officer (at the caller's sites), most frequent first."""
    first, last = _days(date_from, date_to)
    return {"officer": officer or None, "items": store.low_reasons(officer or None, first, last, sites=scope.sites)}


@router.get("/events", responses=ok(EventPage))
def events(
    scope: SiteViewer, store: StoreDep, settings: SettingsDep,
    device: Id = None, site: Id = None, counter: Id = None, officer: Id = None,
    type: Annotated[Literal["rating", "call", "signin", "signout", "take"] | None, Query()] = None,
    since: Annotated[str | None, Query(description="ms (up to 15 digits), YYYY-MM-DD (its start) or an ISO "
                                                   "date-time (without an offset: the site's zone)",
                                       json_schema_extra=_INSTANT)] = None,
    until: Annotated[str | None, Query(description="exclusive: ms or ISO date-time; "
                                                   "a YYYY-MM-DD includes that day",
                                       json_schema_extra=_INSTANT)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    after: Annotated[int | None, Query(ge=0, le=MAX_INT, description="the `next` of the previous page")] = None,
):
    """Stored events in storage order, a page at a time: pass `next` back as `after`."""
    days_in = (store.site(site) or {}).get("tz", settings.tz) if site is not None else settings.tz
    rows = store.events(device=device, site=site, counter=counter, officer=officer, type=type,
                        since_ms=_instant(since, "since", days_in, end=False),
                        until_ms=_instant(until, "until", days_in, end=True),
                        limit=limit + 1, after_id=after, sites=scope.narrow(site))
    page = rows[:limit]
    return {"items": page, "next": page[-1]["id"] if len(rows) > limit else None}


@router.get("/dead-letters", responses=ok(DeadLetterPage))
def dead_letters(_: Manager, store: StoreDep,
                 limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
                 offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0):
    return {"items": store.dead_letters(limit, offset), "limit": limit, "offset": offset}

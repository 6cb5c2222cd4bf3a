"""Officers: the month's ranking, and one officer's page with a daily trend, reasons, calls and counters."""
# No `from __future__ import annotations`: FastAPI reads the dependency annotations as objects.

from datetime import date, timedelta

from fastapi import APIRouter
from markupsafe import Markup

from broker import stats
from broker.waiting import summarize
from broker.web.charts import trend_svg
from broker.web.context import Dashboard
from broker.web.months import parse_period, recent_months
from broker.web.page import UserPage

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

DEFAULT_SCALE = 5  # the trend's scale when the officer has no ratings in the period


@router.get("/officers")
def officers(page: UserPage, period: str | None = None):
    dash = page.dash
    d = dash.today()
    chosen, month, first, last = parse_period(period, d)
    result = dash.store.satisfaction("officer", first, last, satisfied_from=dash.satisfied_from, sites=page.sites)
    return page.render("officers.html", result=result, period=chosen, month=month, first=first, last=last,
                       months=recent_months(d))


def _trend(dash: Dashboard, officer_id: str, scale: int, first: str, last: str, today: date,
           sites: frozenset[str] | None) -> list[dict]:
    """Counted ratings and the satisfaction rate per day at `sites`, first..last but never past today."""
    per_day: dict[str, dict[int, dict[int, int]]] = {}
    for day, sc, score, flagged, n in dash.store.officer_days(officer_id, first, last, sites):
        if not flagged:
            per_day.setdefault(day, {}).setdefault(sc, {})[score] = n
    start, stop = date.fromisoformat(first), date.fromisoformat(last)
    end = min(stop, today) if start <= today else stop
    days = []
    cur = start
    while cur <= end:
        key = cur.isoformat()
        fig = stats.summarize_scales(per_day.get(key, {}), scale, 0, dash.satisfied_from)
        days.append({"day": key, "ratings": fig["ratings"], "rate": fig["rate"]})
        cur += timedelta(days=1)
    return days


@router.get("/officers/{officer_id}")
def officer(page: UserPage, officer_id: str, period: str | None = None):
    dash, store = page.dash, page.dash.store
    d = dash.today()
    chosen, month, first, last = parse_period(period, d)
    sites = page.sites
    seen = store.officers_seen(page.scope.sites)
    record = store.officer(officer_id) if seen is None or officer_id in seen else None
    result = store.satisfaction("officer", first, last, satisfied_from=dash.satisfied_from, sites=sites)
    row = next((r for r in result["rows"] if r["key"] == officer_id), None)
    if record is None and row is None:
        return page.error(404, "error.not_found")
    scale = result["scale"] or DEFAULT_SCALE
    days = _trend(dash, officer_id, scale, first, last, d, sites)
    return page.render("officer.html", officer_id=officer_id,
                       name=(record or {}).get("name") or (row or {}).get("name") or officer_id,
                       record=record, row=row, scale=scale, period=chosen, month=month, first=first, last=last,
                       reasons=store.low_reasons(officer_id, first, last, sites),
                       calls=store.officer_calls(officer_id, first, last, sites),
                       counters=store.officer_counters(officer_id, first, last, sites),
                       trend=Markup(trend_svg(days, page.t)), days=days, months=recent_months(d),
                       queue=summarize(store.ticket_times(first, last, officer=officer_id, sites=sites)))

"""Misuse: flagged presses per counter and per hour of the day, to spot a counter being gamed."""
# No `from __future__ import annotations`: FastAPI reads the dependency annotations as objects.

from fastapi import APIRouter

from broker.web.months import parse_period, recent_months
from broker.web.page import UserPage

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

HOURS = range(24)


@router.get("/misuse")
def misuse(page: UserPage, period: str | None = None):
    dash = page.dash
    d = dash.today()
    chosen, month, first, last = parse_period(period, d)
    by_counter = dash.store.flagged_by_counter(first, last, page.sites)
    by_hour = dash.store.flagged_by_hour(first, last, dash.tz_name, page.sites)
    hours_total = [sum(c.get(h, 0) for c in by_hour.values()) for h in HOURS]
    peak = max([n for c in by_hour.values() for n in c.values()] + [1])
    grid = [{"site": r["site"], "counter": r["counter"], "name": r["name"],
             "hours": [by_hour.get((r["site"], r["counter"]), {}).get(h, 0) for h in HOURS]}
            for r in by_counter]
    return page.render("misuse.html", period=chosen, month=month, first=first, last=last,
                       by_counter=by_counter, grid=grid, hours_total=hours_total, peak=peak,
                       total=sum(r["flagged"] for r in by_counter), months=recent_months(d))

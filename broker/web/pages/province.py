"""The province's centres side by side: each one's figures for a period, ranked, with its daily trend.

The figures are GET /api/v1/satisfaction?group=site's and the queue's GET /api/v1/waiting?group=site's
(tickets, mean and 90th percentile wait, no-shows), for the user's sites; "online" counts the
registered devices whose retained status says online now. The monthly report by centre is the
API's `group=site` download (with the same waiting columns).
"""
# No `from __future__ import annotations`: FastAPI reads the dependency annotations as objects.

from datetime import date, timedelta

from fastapi import APIRouter
from markupsafe import Markup

from broker import stats
from broker.api.deps import API
from broker.web.charts import spark_svg
from broker.web.months import parse_period, recent_months
from broker.web.page import Page, UserPage

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _trends(page: Page, scale: int | None, first: str, last: str) -> dict[str, list[dict]]:
    """site -> the satisfaction rate per day, first..last but never past today (as an officer's trend)."""
    per: dict[str, dict[str, dict[int, dict[int, int]]]] = {}
    for site, day, sc, score, flagged, n in page.dash.store.site_days(first, last, page.scope.sites):
        if not flagged:
            per.setdefault(site, {}).setdefault(day, {}).setdefault(sc, {})[score] = n
    start, stop, today = date.fromisoformat(first), date.fromisoformat(last), page.dash.today()
    end = min(stop, today) if start <= today else stop
    days = [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    return {site: [{"day": d, "rate": stats.summarize_scales(by_day.get(d, {}), scale or 5, 0,
                                                             page.dash.satisfied_from)["rate"]} for d in days]
            for site, by_day in per.items()}


def _online(page: Page) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in page.dash.store.devices():
        if d["registered"] and d["online"] and page.scope.sees(d["site"]):
            counts[d["site"]] = counts.get(d["site"], 0) + 1
    return counts


NO_TICKETS = {"tickets": 0, "no_show": 0, "no_show_share": None, "wait_mean_s": None, "wait_p90_s": None}


def _waiting(page: Page, first: str, last: str) -> dict[str, dict]:
    """site -> its waiting row as GET /api/v1/waiting?group=site serves it, plus `no_show_share`:
    no-shows over all the period's tickets (None without tickets)."""
    rows = page.dash.store.waiting_stats("site", first, last, sites=page.scope.sites)
    return {r["key"]: {**r, "no_show_share": r["no_show"] / r["tickets"] if r["tickets"] else None} for r in rows}


@router.get("/province")
def province(page: UserPage, period: str | None = None):
    dash = page.dash
    chosen, month, first, last = parse_period(period, dash.today())
    result = dash.store.satisfaction("site", first, last, satisfied_from=dash.satisfied_from,
                                     sites=page.scope.sites)
    names = dash.site_names()
    waits = _waiting(page, first, last)
    ranked = {r["key"] for r in result["rows"]}
    # A centre without ratings is listed unranked, with its queue figures if it had tickets.
    unranked = (names.keys() | waits.keys()) - ranked
    quiet = [{"key": k, "name": names.get(k, k)} for k in sorted(unranked, key=lambda k: names.get(k, k))
             if page.scope.sees(k)]
    trends = _trends(page, result["scale"], first, last)
    sparks = {k: Markup(spark_svg(v, page.t("province.trend"))) for k, v in trends.items()}
    return page.render("province.html", result=result, quiet=quiet, online=_online(page), sparks=sparks,
                       waits=waits, no_tickets=NO_TICKETS,
                       period=chosen, month=month, first=first, last=last, months=recent_months(dash.today()),
                       api=API)

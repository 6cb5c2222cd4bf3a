"""Waiting times: the month's waiting and service times by queue (the store's `waiting_stats`, the
figures GET /api/v1/waiting serves) and by the hour of day the ticket was taken."""
# No `from __future__ import annotations`: FastAPI reads the dependency annotations as objects.

from fastapi import APIRouter

from broker.waiting import by_hour
from broker.web.months import parse_period, recent_months
from broker.web.page import UserPage

__all__ = ["router", "rows_of"]

router = APIRouter(include_in_schema=False)


def rows_of(result) -> list[dict]:
    """`waiting_stats` rows, whether it answers the API's {"rows": [...]} or the list itself."""
    return list(result["rows"] if isinstance(result, dict) else result)


@router.get("/waiting")
def waiting(page: UserPage, period: str | None = None):
    dash = page.dash
    d = dash.today()
    chosen, month, first, last = parse_period(period, d)
    by_queue = rows_of(dash.store.waiting_stats("queue", first, last, sites=page.sites))
    hours = by_hour(dash.store.ticket_times(first, last, sites=page.sites), dash.tz)
    return page.render("waiting.html", by_queue=by_queue, hours=hours, period=chosen, month=month,
                       first=first, last=last, months=recent_months(d))

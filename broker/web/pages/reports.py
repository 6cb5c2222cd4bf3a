"""Reports: links to the API's monthly XLSX and CSV downloads for a chosen month."""
# No `from __future__ import annotations`: FastAPI reads the dependency annotations as objects.

from fastapi import APIRouter

from broker.api.deps import API
from broker.web.months import parse_period, recent_months
from broker.web.page import UserPage

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.get("/reports")
def reports(page: UserPage, month: str | None = None):
    d = page.dash.today()
    _, chosen, _, _ = parse_period(month, d)
    return page.render("reports.html", month=chosen, months=recent_months(d), api=API)

"""Users and tokens, and the centres each sees: a province-wide admin changes their scope here.

The same change as `PUT /api/v1/users/{name}/sites` (and `hailong broker user sites`). Users and
tokens are created on the command line, where their secrets are shown once.
"""
# No `from __future__ import annotations`: FastAPI reads the dependency annotations as objects.

import logging
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from broker.auth import AuthError
from broker.web.page import ActingPage, Form, Page, PageError, UserPage

__all__ = ["router"]

log = logging.getLogger("hailong.web")

router = APIRouter(include_in_schema=False)

KINDS = ("user", "token")


def _province_admin(page: Page) -> Page:
    """Only an admin who sees every centre may decide who sees which."""
    who = page.principal
    if not who.allows("admin") or who.sites is not None:
        raise PageError(403, "error.forbidden")
    return page


@router.get("/users")
def users(page: UserPage, msg: str | None = None, name: str = ""):
    auth = _province_admin(page).dash.auth
    rows = [{"kind": "user", **u} for u in auth.list_users()]
    rows += [{"kind": "token", **t} for t in auth.list_tokens() if not t["revoked"]]
    sites = sorted(page.dash.site_names().items(), key=lambda kv: kv[1])
    return page.render("users.html", rows=rows, sites=sites, message=msg if msg in ("saved", "bad") else None,
                       message_name=name)


@router.post("/users/sites")
def set_sites(page: ActingPage, form: Form):
    auth = _province_admin(page).dash.auth
    kind, name = form.get("kind", ""), form.get("name", "")
    sites = None if form.get("all") else sorted(k[len("site:"):] for k in form if k.startswith("site:"))
    if kind not in KINDS:
        return RedirectResponse("/users?msg=bad", status_code=303)
    try:
        auth.set_sites(kind, name, sites)
    except AuthError:
        return RedirectResponse(f"/users?msg=bad&name={quote(name, safe='')}", status_code=303)
    log.info("dashboard: %s set the sites of %s %r to %s", page.session.user, kind, name, sites or "every site")
    return RedirectResponse(f"/users?msg=saved&name={quote(name, safe='')}", status_code=303)

"""Who sees which sites: users' and tokens' scope, listed and changed by a province-wide admin.

Users and tokens are created with `hailong broker user add` / `token create` (their secrets are
shown once, on a terminal); here an admin lists them and changes which sites each may see.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from pydantic import BaseModel, Field

from broker.api.answers import ok
from broker.api.bodies import Key
from broker.api.deps import Admin
from broker.api.errors import api_router, errors
from broker.auth import AuthError, NoSuchPrincipal

__all__ = ["router"]

router = api_router("principals")

Name = Annotated[str, Path(min_length=1, max_length=64, examples=["q1-manager"])]


class ScopeIn(BaseModel):
    """The sites it may see: a list of site ids (possibly empty), or null for every site (province-wide)."""

    sites: list[Key()] | None = Field(max_length=1000)  # type: ignore[valid-type]


class Principal(BaseModel):
    """A user or a token: its role and sites (null: every site)."""

    name: str
    role: str
    sites: list[str] | None


class PrincipalList(BaseModel):
    """Users or tokens, by name; tokens revoked ones included (`revoked`), never their secrets."""

    items: list[Principal]


def _auth(request: Request):
    return request.app.state.auth


AuthDep = Annotated[object, Depends(_auth)]
_SHOWN = ("name", "role", "sites")


def _set(auth, kind: str, name: str, body: ScopeIn) -> dict:
    try:
        auth.set_sites(kind, name, body.sites)
    except NoSuchPrincipal as e:
        raise HTTPException(404, str(e)) from None
    except AuthError as e:
        raise HTTPException(422, str(e)) from None
    return next(p for p in _listed(auth, kind) if p["name"] == name)


def _listed(auth, kind: str) -> list[dict]:
    if kind == "user":
        return [{k: u[k] for k in _SHOWN} for u in auth.list_users()]
    return [{**{k: t[k] for k in _SHOWN}, "revoked": t["revoked"]} for t in auth.list_tokens()]


@router.get("/users", responses=ok(PrincipalList))
def users(_: Admin, auth: AuthDep):
    return {"items": _listed(auth, "user")}


@router.put("/users/{name}/sites", responses=ok(Principal) | errors(404))
def user_sites(_: Admin, auth: AuthDep, name: Name, body: ScopeIn):
    """Change which sites the user sees; the dashboard follows at the user's next request."""
    return _set(auth, "user", name, body)


@router.get("/tokens", responses=ok(PrincipalList))
def tokens(_: Admin, auth: AuthDep):
    return {"items": _listed(auth, "token")}


@router.put("/tokens/{name}/sites", responses=ok(Principal) | errors(404))
def token_sites(_: Admin, auth: AuthDep, name: Name, body: ScopeIn):
    """Change which sites the live token named so sees, from its next request."""
    return _set(auth, "token", name, body)

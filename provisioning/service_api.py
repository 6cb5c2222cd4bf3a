"""The technician's calls to the central service's HTTP API, with an admin token."""
from __future__ import annotations


class ServiceError(RuntimeError):
    """The service could not be reached, or refused the call; the message says which and why."""


def call(method: str, base_url: str, path: str, token: str, body: dict | None = None, *,
         transport=None) -> dict:
    """`method` `base_url`/api/v1`path` as JSON; the answer's JSON ({} when empty)."""
    import httpx

    endpoint = f"{base_url.rstrip('/')}/api/v1{path}"
    try:
        with httpx.Client(transport=transport, timeout=15) as client:
            r = client.request(method, endpoint, json=body, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as e:
        raise ServiceError(f"could not reach the service at {endpoint}: {e}") from None
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        raise ServiceError(f"the service refused {method} {path} ({r.status_code}): {detail}")
    return r.json() if r.content else {}

"""The store's error types: what its callers catch instead of the database driver's errors."""
from __future__ import annotations

__all__ = ["Ambiguous", "InUse", "NothingHeld", "StoreError"]


class StoreError(Exception):
    """The store cannot do what was asked: database trouble, a closed store, a newer schema."""


class InUse(StoreError, LookupError):
    """Deleting this would strand other records (e.g. a site that still has counters)."""


class NothingHeld(StoreError, LookupError):
    """No held events wait for a decision from this device (and the site and counter asked for)."""


class Ambiguous(StoreError, ValueError):
    """The request fits several things and must name one (e.g. held events naming several counters)."""

"""The store's error types: what its callers catch instead of the database driver's errors."""
from __future__ import annotations

__all__ = ["InUse", "StoreError"]


class StoreError(Exception):
    """The store cannot do what was asked: database trouble, a closed store, a newer schema."""


class InUse(StoreError, LookupError):
    """Deleting this would strand other records (e.g. a site that still has counters)."""

"""Where InUse used to be defined; the registry's queries are now part of the store (broker/store/registry.py).

Kept so `from broker.registry import InUse` (the HTTP API) works unchanged; new code imports it from
broker.store.
"""
from __future__ import annotations

from broker.store.errors import InUse

__all__ = ["InUse"]

"""The central service's store: every event exactly once, and per-officer satisfaction.

`Store` is one object with flat methods (`store.ingest(...)`, `store.sites()`,
`store.satisfaction(...)`), because that is what the ingest loop, the HTTP API and the
dashboard call. Behind it, one module per concern:

    connection  opening the store; the read and write transactions every part runs in (StoreBase)
    schema      the migrations, applied on open
    dialect     the SQL that is SQLite's own (pragmas, upserts, index hints ...)
    dialect_pg  PostgreSQL's side of it ("postgresql://..."): the connection, the write lock across instances;
                pg_sql translates the store's statements for it, schema_pg holds its migrations
    batch       ingest: exactly-once inserts, rollups in the same transaction, clock correction
    held        only known devices count: the policy, and the held events an admin approves or discards
    deadletters what ingest refused, kept within bounds (a payload prefix, a maximum of rows)
    rollups     the per-day and per-month count tables: how a batch moves them, how a report reads them
    registry    sites, counters, officers, assignments, device bindings: writes and reads
    devices     device health (status, telemetry) and queue tickets
    statistics  satisfaction, low-score reasons, the events, dead letters, totals
    dashboard   the dashboard's page queries
    queues      the queue: queues, the queues a counter serves, daily numbers and kiosk blocks
    tickets     queue tickets (recorded in the ingest batch), calls and their log
    waiting     waiting and service times of tickets
    ticket_times  the queue tickets' times, read for the waiting page, the officer page and reports
    alerts      alerts, their history and the outbox of their notices; alerts_hours: opening hours per site
    sites       answers by site: the filter of site-aware queries, officers a set of sites has seen,
                figures per site and day (scoped principals, the province view)
    releases    fleet updates: published releases, rollouts and their devices

Each concern is a mix-in subclassing StoreBase, and `Store` just combines them. A mix-in uses
only StoreBase (its transactions, `_rows`, the ingest caches) and module-level helpers of the
modules below it, never another mix-in's methods, so each module reads on its own. Mix-ins
rather than composition because callers reach every method on the Store itself: composition
would mean either a forwarding method per public method or changing every caller.

Errors: the driver's errors never leave a transaction (`StoreBase._read`/`_write` turn them
into StoreError); bad arguments are ValueError; InUse (a StoreError) refuses a delete;
NothingHeld (a LookupError) and Ambiguous (a ValueError) refuse an approval or a discard.
See docs/store.md for the schema and the rules for time and attribution.
"""
from __future__ import annotations

from broker.store.alerts import Alerts
from broker.store.alerts_hours import SiteHours
from broker.store.batch import Incoming, Ingest, Outcome
from broker.store.dashboard import Dashboard
from broker.store.devices import Devices
from broker.store.errors import Ambiguous, InUse, NothingHeld, StoreError
from broker.store.held import Held
from broker.store.queues import QueueRefusal, Queues
from broker.store.registry import Registry
from broker.store.sites import Sites
from broker.store.releases import Releases
from broker.store.schema import MIGRATIONS
from broker.store.statistics import GROUPS, UNATTRIBUTED, Statistics
from broker.store.ticket_times import TicketTimes
from broker.store.tickets import Tickets
from broker.store.waiting import WAITING_GROUPS, Waiting

__all__ = ["GROUPS", "MIGRATIONS", "WAITING_GROUPS", "Ambiguous", "Incoming", "InUse", "NothingHeld", "Outcome",
           "QueueRefusal", "Store", "StoreError", "UNATTRIBUTED"]


class Store(Ingest, Registry, Held, Devices, Statistics, Dashboard, Sites, Queues, Tickets, Waiting, TicketTimes,
            Alerts, SiteHours, Releases):
    """The store: open with `Store.open(url_or_path)`, close with `close()` or a `with` block."""

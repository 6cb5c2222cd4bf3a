"""The central service, one of the three sides above the shared base (see common/__init__.py).

MQTT ingest that commits every event before it acks it (`ingest`), the store package (`store/`:
schema, ingest batch, registry, device health, statistics, dashboard queries), satisfaction
figures (`stats`), the HTTP API (`api/`, one router per concern) and the managers' dashboard
(`web/`), shared actions both call (`actions`), report files (`reports`), users and tokens
(`auth`), the embedded MQTT broker for small sites (`embedded`), and `service`, which assembles
them from the config. It uses `common/` and `protocol/`, never `device/` or `provisioning/`.
"""

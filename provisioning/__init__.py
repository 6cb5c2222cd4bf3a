"""The technician's tool: inventory of sites and devices, their MQTT credentials, the broker's
password and ACL files, per-device bundles and Raspberry Pi boot partitions.

Entry point: `python -m provisioning.cli` (`hailong provision ...`). See docs/provisioning.md.
One of the three sides above the shared base: it uses `common/` (the device config file's schema
and the Mosquitto file formats live there) and `protocol/`, never `device/` or `broker/`.
"""

"""The technician's tool: inventory of sites and devices, their MQTT credentials, the broker's
password and ACL files, per-device bundles and Raspberry Pi boot partitions.

Entry point: `python -m provisioning.cli` (`hailong provision ...`). See docs/provisioning.md.
"""

"""The counter firmware that runs on each Raspberry Pi, one of the three sides above the shared base.

A pure state machine (`counter`) returning effects the runtime performs in order, the durable
ledger, outbox and MQTT uplink, the hardware seams (panel, display, badge reader), the doctor
and the provisioning agent. It uses `common/` and `protocol/`, never `broker/` or `provisioning/`.
"""

__version__ = "0.1.0"

"""Central-side MQTT plumbing: the embedded broker used by small sites and the demo."""

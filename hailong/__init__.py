"""The top of the house: the `hailong` command (`cli`, one entry point for device, service,
provisioning and demo) and the demo. It may import every layer below; nothing imports it.
"""

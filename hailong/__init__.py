"""The `hailong` command: one entry point for device, service, provisioning and demo."""

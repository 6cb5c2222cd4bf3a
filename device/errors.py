"""Exceptions the device software raises on purpose."""
from __future__ import annotations

from common import errors


class DeviceError(errors.HailongError):
    """Base class for the device's own errors, so callers can catch them as one family."""


class ConfigError(DeviceError, errors.ConfigError):
    """The device's configuration cannot be used (see common.errors.ConfigError)."""


class HardwareError(DeviceError, RuntimeError):
    """A part of the counter (GPIO, display, serial port) could not be opened."""

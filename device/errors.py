"""Exceptions the device software raises on purpose."""
from __future__ import annotations

from pathlib import Path


class DeviceError(Exception):
    """Base class for the device's own errors, so callers can catch them as one family."""


class ConfigError(DeviceError, ValueError):
    """The configuration cannot be used; carries every problem found, not just the first.

    `problems` is a list of (key, reason) pairs, the key dotted like "mqtt.port".
    """

    def __init__(self, problems: list[tuple[str, str]], source: str | Path | None = None):
        self.problems = list(problems)
        self.source = source
        # Passing the parts (not the rendered text) keeps the exception picklable.
        super().__init__(self.problems, source)

    def __str__(self) -> str:
        where = f" in {self.source}" if self.source else ""
        return "\n".join([f"config error{where}:", *(f"  {key}: {reason}" for key, reason in self.problems)])


class HardwareError(DeviceError, RuntimeError):
    """A part of the counter (GPIO, display, serial port) could not be opened."""

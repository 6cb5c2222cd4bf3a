"""The error types every layer shares."""
from __future__ import annotations

from pathlib import Path


class HailongError(Exception):
    """Base class for hailong's own errors, so a caller can catch them as one family."""


class ConfigError(HailongError, ValueError):
    """A configuration cannot be used; carries every problem found, not just the first.

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

"""The one exception type of the wire contract."""

from __future__ import annotations

__all__ = ["ProtocolError"]


class ProtocolError(ValueError):
    """A payload, topic or field that breaks the wire contract.

    Subclasses ValueError so code that already treats bad input as a
    ValueError keeps working. `reason` is meant for humans and logs (the
    service also copies it into an ack's "rejected" entry); `field` names the
    offending field, dotted for nested objects ("officer.id"), or is None
    when the whole payload or topic is at fault.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        # Both go to args so the exception pickles and reprs faithfully.
        super().__init__(reason, field)
        self.reason = reason
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason

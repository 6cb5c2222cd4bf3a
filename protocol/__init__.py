"""hailong MQTT wire contract, version 1.

Shared by the counter firmware and the central service. Deliberately tiny:
this module imports nothing but `protocol.errors`; import the submodules
(`protocol.topics`, `protocol.codec`, `protocol.events`, `protocol.messages`)
where they are needed. See docs/protocol.md for the contract itself.
"""

from protocol.errors import ProtocolError

__all__ = ["DEFAULT_PREFIX", "PROTOCOL_VERSION", "ProtocolError"]

PROTOCOL_VERSION = 1
DEFAULT_PREFIX = "hailong/v1"

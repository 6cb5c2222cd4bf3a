"""Counter-side software that runs on each Raspberry Pi."""

__version__ = "0.1.0"

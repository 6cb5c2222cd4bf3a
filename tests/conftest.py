from __future__ import annotations

import pytest

from tests.mosquitto import Mosquitto


@pytest.fixture
def mosquitto(tmp_path):
    """A real mosquitto on a free loopback port; `.stop()`, `.start()`, `.restart()` mid-test."""
    broker = Mosquitto(tmp_path / "mosquitto").start()
    try:
        yield broker
    finally:
        broker.stop()

import random

import pytest

from device.backoff import backoff_delay


def test_grows_exponentially_until_the_cap():
    mid = lambda: 0.5  # noqa: E731
    delays = [backoff_delay(n, base=1, cap=60, rand=mid) for n in range(10)]
    assert delays[:6] == [0.75, 1.5, 3.0, 6.0, 12.0, 24.0]
    assert delays[6:] == [45.0] * 4  # step capped at 60 -> 30 + 0.5*30


@pytest.mark.parametrize("attempt", [0, 1, 5, 10, 1000])
def test_bounds_are_half_step_to_full_step(attempt):
    step = min(60, 2 ** min(attempt, 64))
    assert backoff_delay(attempt, rand=lambda: 0.0) == step / 2
    assert backoff_delay(attempt, rand=lambda: 0.999999) == pytest.approx(step, rel=1e-5)


def test_jitter_spreads_a_thousand_devices_over_the_window():
    rng = random.Random(7)
    delays = [backoff_delay(4, rand=rng.random) for _ in range(1000)]
    assert min(delays) >= 8 and max(delays) < 16
    # Spread out: no one-second bucket holds more than a fifth of the devices.
    buckets = {}
    for d in delays:
        buckets[int(d)] = buckets.get(int(d), 0) + 1
    assert len(buckets) == 8
    assert max(buckets.values()) < 200


@pytest.mark.parametrize("kw", [dict(attempt=-1), dict(attempt=0, base=0), dict(attempt=0, base=5, cap=1)])
def test_rejects_nonsense(kw):
    attempt = kw.pop("attempt")
    with pytest.raises(ValueError):
        backoff_delay(attempt, **kw)

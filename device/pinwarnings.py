"""gpiozero's pin-factory fallbacks as one line of the doctor's table instead of four warnings.

Without GPIO, gpiozero warns once per factory it tries (lgpio, rpigpio, pigpio, native) before
giving up; printed above the doctor's table they bury it. The reasons are what a technician
needs, so they go into the gpio check's detail: FAIL with every reason when no factory loads,
WARN when a fallback factory works (the counter runs, but not on the factory expected).
"""
from __future__ import annotations

import warnings
from typing import Callable


def gpio_check_with_fallbacks(check: Callable[[], tuple[str, str]]) -> tuple[str, str]:
    from gpiozero.exc import PinFactoryFallback

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PinFactoryFallback)
        try:
            result, detail = check()
        except Exception as e:  # noqa: BLE001 - gpiozero raises BadPinFactory and driver errors alike
            result, detail = "FAIL", f"{type(e).__name__}: {e}"
    reasons = [str(w.message).removeprefix("Falling back from ") for w in caught
               if issubclass(w.category, PinFactoryFallback)]
    for w in caught:  # anything else is not ours to hide
        if not issubclass(w.category, PinFactoryFallback):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not reasons:
        return result, detail
    tried = "; ".join(reasons)
    if result == "PASS":
        return "WARN", f"{detail}, but on a fallback pin factory ({tried})"
    return result, f"{detail} (tried {tried})"

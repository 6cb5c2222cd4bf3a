"""The hall display in real headless Chromium: calls made by the real counter firmware over a real
Mosquitto appear on the page, and the page asks for the voice clips of each call in order."""
from __future__ import annotations

import time

import pytest

from broker.auth import DISPLAY
from broker.voice import announcement
from common.clock import now
from common.periods import local_day, zone
from protocol.events import make_event
from tests.browser import CHROMIUM_ARGS, chromium_path
from tests.support import DeviceProcess, write_config
from tests.test_broker_api import Counter
from tests.test_web_dashboard import dash  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium missing: `make test` installs it")

SITE, TZ = "kien-thuy", "Asia/Ho_Chi_Minh"
# As deploy/hailong-hall.service starts it: nobody clicks a TV to allow sound.
KIOSK_ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture
def dash_clock():
    """The wall clock: the counter firmware stamps its events with the time it really is."""
    return now


class Kiosk(Counter):
    """A kiosk as MQTT sees it: its take events (the kiosk firmware is another branch's), acked by the service."""

    def take(self, ticket: str, queue: str) -> None:
        self.seq += 1
        ms = int(now() * 1000)
        self.send(make_event("take", device=self.device, site=self.site, counter=self.counter,
                             ledger="0123456789abcdef", seq=self.seq, ts=ms, clock_ok=True, boot="boot-1",
                             mono=float(self.seq), ticket=ticket, queue=queue, priority=False, source="service",
                             date=local_day(ms, zone(TZ))))


def path_of(url: str) -> str:
    """The clip's path, without the host and the per-call query."""
    return "/" + url.split("//", 1)[1].split("/", 1)[1].split("?", 1)[0]


def clips_of(ticket: str) -> list[str]:
    return [f"/hall/voice/{c}" for c in announcement(ticket, "3", "Quầy 3")]


@pytest.fixture
def hall(dash, mosquitto):  # noqa: F811
    store = dash.store
    store.upsert_site(SITE, "Kiến Thụy", TZ)
    store.upsert_queue(SITE, "A", "Đất đai", "A")
    store.upsert_counter(SITE, "3", "Quầy 3")
    store.set_counter_queues(SITE, "3", ["A"])
    store.register_device("dev-1", SITE, "3")
    store.register_device("kiosk-1", SITE, "kiosk")
    kiosk = Kiosk(mosquitto, "kiosk-1", site=SITE, counter="kiosk")
    key = dash.auth.create_token(DISPLAY, "hall", site=SITE)
    yield kiosk, key
    kiosk.close()


def test_each_call_shows_on_the_hall_display_and_is_announced_clip_by_clip(dash, hall, mosquitto, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    kiosk, key = hall
    dev = DeviceProcess(write_config(tmp_path, mosquitto, counter="3"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=KIOSK_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.set_default_timeout(15_000)
            requested_full: list[str] = []
            page.on("request", lambda r: requested_full.append(r.url) if "/hall/voice/" in r.url else None)
            page.goto(f"{dash.server.url}/hall/{SITE}?key={key}")
            page.wait_for_selector("#hall-status.on")  # the live feed is connected before anything happens
            dev.wait_ready()
            dev.wait("online", lambda v: v[-1] is True)

            kiosk.take("A001", "A")
            kiosk.take("A002", "A")
            page.wait_for_selector('#hall-waiting li[data-queue="A"][data-waiting="2"]')

            latency = {}
            for press, ticket, recall in (("press next", "A001", False), ("press recall", "A001", True),
                                          ("press next", "A002", False)):
                seen = len(page.query_selector_all("#hall-calls li[data-id]"))
                pressed = time.monotonic()
                dev.send(press)
                page.wait_for_function(f"document.querySelectorAll('#hall-calls li[data-id]').length > {seen}")
                latency[press + " " + ticket] = round(time.monotonic() - pressed, 3)
                newest = page.query_selector("#hall-calls li:first-child")
                assert newest.get_attribute("data-ticket") == ticket
                assert newest.inner_text().split() == [ticket, "→", "Quầy", "3"]
                assert (newest.get_attribute("data-recall") == "1") is recall
                # The whole announcement, then the next press: each call's clips are checked on their own.
                page.wait_for_function("() => !window.hallVoice.busy")
            print("NEXT/RECALL to screen (s):", latency)  # measured, not asserted

            page.wait_for_selector('#hall-waiting li[data-queue="A"][data-waiting="0"]')
            want = clips_of("A001") * 2 + clips_of("A002")  # the recall is announced again
            assert [path_of(u) for u in page.evaluate("window.hallVoice.spoken")] == want
            # What the network saw: the same clips in the same order, each once per announcement (a media
            # element may ask twice for one address, e.g. a range request: one call's clip, one address).
            asked = [u for i, u in enumerate(requested_full) if i == 0 or u != requested_full[i - 1]]
            assert [path_of(u) for u in asked] == want
        finally:
            browser.close()
            dev.close()

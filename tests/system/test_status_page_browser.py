"""The status page in a real browser (headless Chromium) against a gateway polling the simulator.

Checks what a technician relies on: every device listed with values and charts, a device shown
down within seconds of going away and up again after, the uplink following a broker stop and
start, no console errors, nothing fetched from anywhere but the gateway (the browser has no
route to any other host), and a layout that fits a phone. With STREETGATE_SCREENSHOT=1 the run
saves docs/status-page.png (the README shows it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.profile import load_profile
from simulator.modbus_server import DeviceSpec
from tests.support.browser import chromium, requested_urls
from tests.support.gateway_rig import gateway_process, simulator_thread, write_config
from tests.support.mosquitto import Mosquitto, free_port

SCREENSHOT = Path(__file__).parents[2] / "docs" / "status-page.png"


def wait_for(what: str, condition: Callable[[], Any], timeout: float) -> Any:
    """Poll ``condition`` every 0.2 s until it is truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout}s: {what}")
        time.sleep(0.2)


def page_state(driver: Any) -> dict[str, Any]:
    """What the page shows, read from its DOM in one script call."""
    return driver.execute_script(  # type: ignore[no-any-return]
        """
        const devices = {};
        for (const card of document.querySelectorAll('[data-device]')) {
          devices[card.dataset.device] = {
            health: card.dataset.health,
            values: [...card.querySelectorAll('td.value')].map((td) => td.textContent),
            points: [...card.querySelectorAll('svg.chart polyline')]
              .map((p) => p.getAttribute('points').trim().split(' ').length),
            charts: card.querySelectorAll('svg.chart').length,
          };
        }
        const link = document.getElementById('link');
        return {
          devices,
          uplink: document.getElementById('uplink-state').dataset.state || '',
          link: link.dataset.state,
          facts: document.getElementById('uplink-facts').textContent,
          gateway: document.getElementById('gateway').textContent,
          overflow: document.documentElement.scrollWidth - window.innerWidth,
        };
        """
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_page_in_a_browser_follows_devices_and_the_uplink(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    started = time.monotonic()
    specs = [
        DeviceSpec("meter-1", load_profile("sdm120"), unit_id=1),
        DeviceSpec("meter-2", load_profile("sdm120"), unit_id=2),
        DeviceSpec("climate-1", load_profile("xy-md02"), unit_id=3),
    ]
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    with simulator_thread(specs) as rig:
        config = write_config(tmp_path / "gw.toml", mosquitto.port, rig.sim, port, "500ms")
        with gateway_process(config) as proc, chromium(tmp_path / "chromium") as driver:

            def load() -> bool:
                assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
                try:
                    driver.get(origin + "/")
                except Exception:  # the gateway is not listening yet
                    return False
                return "cabinet-12" in driver.title

            wait_for("the page loads from the gateway", load, 20)

            def all_listed() -> dict[str, Any] | None:
                state = page_state(driver)
                devices = state["devices"]
                ok = set(devices) == {s.name for s in specs} and all(
                    d["health"] == "ok" and d["values"] and all("–" not in v for v in d["values"])
                    for d in devices.values()
                )
                return state if ok and state["uplink"] == "connected" else None

            state = wait_for("every device listed ok with values", all_listed, 20)
            assert state["gateway"] == "cabinet-12"
            assert "127.0.0.1:" in state["facts"]
            meter = state["devices"]["meter-1"]
            assert any(v.endswith(" V") for v in meter["values"]), meter
            assert meter["charts"] == len(meter["values"])
            wait_for(
                "every chart has points",
                lambda: all(
                    d["points"] and all(n >= 2 for n in d["points"])
                    for d in page_state(driver)["devices"].values()
                ),
                10,
            )

            # A device goes away, then comes back.
            rig.call(rig.sim["meter-2"].stop())
            gone = time.monotonic()
            wait_for(
                "meter-2 shown down",
                lambda: page_state(driver)["devices"]["meter-2"]["health"] == "down",
                15,
            )
            down_after = time.monotonic() - gone
            assert page_state(driver)["devices"]["meter-1"]["health"] == "ok"
            rig.call(rig.sim["meter-2"].start())
            wait_for(
                "meter-2 shown ok again",
                lambda: page_state(driver)["devices"]["meter-2"]["health"] == "ok",
                30,
            )

            # The broker goes away, then comes back.
            mosquitto.stop()
            wait_for(
                "the uplink shown not connected",
                lambda: page_state(driver)["uplink"] in {"waiting", "connecting"},
                15,
            )
            mosquitto.start()
            wait_for(
                "the uplink shown connected again",
                lambda: page_state(driver)["uplink"] == "connected",
                20,
            )
            assert page_state(driver)["link"] == "live"

            if os.environ.get("STREETGATE_SCREENSHOT") == "1":
                # A few 30 s chart points, and the picture shows the settled state.
                time.sleep(95)
                SCREENSHOT.write_bytes(driver.get_screenshot_as_png())

            # A phone: nothing wider than the screen.
            driver.set_window_size(390, 844)
            time.sleep(2.5)
            assert page_state(driver)["overflow"] <= 0

            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], errors
            urls = requested_urls(driver.get_log("performance"))
            assert urls
            # chrome:// pages (its new-tab page) are the browser's own, not the network.
            network = [u for u in urls if u.startswith(("http:", "https:", "ws:", "wss:"))]
            strangers = [u for u in network if not u.startswith(origin + "/")]
            assert strangers == [], strangers
            assert {u.removeprefix(origin) for u in network} >= {"/", "/page.js", "/page.css"}
    took = time.monotonic() - started
    print(f"browser test: {took:.1f}s, device shown down {down_after:.1f}s after it stopped")

"""The browser tests' own set-up: they run in a network namespace that nothing outside can
reach, and Chromium runs with WebRTC's mDNS hiding off without losing Playwright's switches."""

from __future__ import annotations

import re

from playwright.sync_api import Browser

from tests.browser.conftest import MDNS_FEATURE
from tests.browser.sealed_network import NAMESPACE_ADDRESS, SealedNetwork


def test_tests_run_in_a_namespace_holding_only_loopback_and_the_sealed_veth(
    sealed_network: SealedNetwork,
) -> None:
    interfaces = {line.split()[0].split("@")[0]: line
                  for line in sealed_network.interfaces().splitlines() if line.strip()}
    assert set(interfaces) == {"lo", "v0", "v1"}
    assert f"{NAMESPACE_ADDRESS}/24" in interfaces["v0"]


def test_chromium_keeps_playwrights_disabled_features_and_adds_mdns_hiding(
    chromium: Browser,
) -> None:
    page = chromium.new_page()
    try:
        page.goto("chrome://version")
        command_line = page.inner_text("#command_line")
    finally:
        page.close()
    switches = re.findall(r"--disable-features=(\S+)", command_line)
    # Chromium honours only the last switch: it must hold ours and Playwright's together.
    features = switches[-1].split(",")
    assert MDNS_FEATURE in features
    assert "DestroyProfileOnBrowserClose" in features
    assert "--allow-loopback-in-peer-connection" in command_line

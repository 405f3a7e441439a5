"""A live portal (``vmportal serve --demo`` on a free loopback port, as the hardening tests start
it) and Debian's Chromium driven by Playwright (nothing downloaded)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hardening.conftest import Live, live
from tests.web_foundation.conftest import AXE, CHROMIUM, CHROMIUM_ARGS, vendored


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


__all__ = ["AXE", "Live", "browser", "live", "vendored"]

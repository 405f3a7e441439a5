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


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """One worker per page module: each module's tests share a live portal and its data (module
    fixtures) and several build on the states the earlier ones reached, so under ``--dist
    loadgroup`` a module's tests stay together and in order. Modules still run in parallel."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None and "/tests/web/" in str(item.path):
            item.add_marker(pytest.mark.xdist_group(f"web-{item.path.stem}"))


__all__ = ["AXE", "Live", "browser", "live", "vendored"]

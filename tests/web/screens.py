"""Screenshots kept as a test artifact: every page a page test walks, at desktop (1280 px) and
phone (375 px) width, saved under ``.cache/screenshots/<test module>/`` of the checkout (ignored by
git, kept between runs; CI uploads the folder), or under ``$VMPORTAL_SCREENSHOT_DIR`` when set. The
file name says the page, the language and the width: ``credentials-zh-CN-375.png``. Each file is
checked to be a non-empty PNG, so a blank capture fails the test instead of passing silently.
``Shots.both`` takes the page at both widths where the test already has it open (a resize, no
second walk), which is how every page test keeps its pages at both widths cheaply."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, ViewportSize

from tests.web_foundation.conftest import AXE, REPO

DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 375, "height": 800}
WIDTHS: tuple[ViewportSize, ...] = (DESKTOP, PHONE)


def screenshot_root() -> Path:
    configured = os.environ.get("VMPORTAL_SCREENSHOT_DIR")
    root = Path(configured) if configured else REPO / ".cache" / "screenshots"
    return root if root.is_absolute() else REPO / root


class Shots:
    """Saves full-page screenshots of one test module into its own folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def take(self, page: Page, name: str) -> Path:
        locale = page.evaluate("() => navigator.language")
        width = page.viewport_size["width"] if page.viewport_size else 0
        path = self.folder / f"{name}-{locale}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000, path
        return path

    def both(self, page: Page, name: str) -> list[Path]:
        """The page as it is now at desktop and at phone width (the window resized, not reloaded, so
        a state the test reached is kept), then back at the width the test uses."""
        was = page.viewport_size
        taken = []
        try:
            for viewport in WIDTHS:
                page.set_viewport_size(viewport)
                taken.append(self.take(page, name))
        finally:
            if was is not None:
                page.set_viewport_size(was)
        return taken


@pytest.fixture(scope="module")
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(screenshot_root() / Path(str(request.path)).stem)


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]

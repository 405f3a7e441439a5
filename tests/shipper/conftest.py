"""Fixtures of the shipper tests: the real portal on a loopback port (``portal``), and the folder the
sensor's logs are written in (``logs``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import Factory
from tests.shipper.harness import LivePortal, serve_portal
from vmportal.kit.settings import Settings


@pytest.fixture
def portal(settings: Settings, factory: Factory) -> Iterator[LivePortal]:
    admin = factory.user("center_admin")
    with serve_portal(settings, admin.username, factory.PASSWORD) as live:
        yield live


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "log"
    folder.mkdir()
    return folder

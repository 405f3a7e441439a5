"""What the page tests against the live demo portal share, instead of a copy in each module: a page
client signed in through the log-in form, the CSRF token of a page, a Chromium page signed in, and a
request filed by CS's unit admin through the API (the seed most center-side pages start from)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import httpx
from playwright.sync_api import Page

from policies.roles import Role
from tests.hardening.conftest import Live
from vmportal.app.demo import PASSWORDS

API = "/api/v1"


@contextlib.contextmanager
def as_user(
    live: Live, username: str, role: Role, *, next: str = "/", **kwargs: Any
) -> Iterator[httpx.Client]:
    """A client of the pages signed in as the demo user ``username`` (the log-in form answers 303)."""
    with live.client(**kwargs) as c:
        r = c.post("/login", data={"username": username, "password": PASSWORDS[role], "next": next})
        assert r.status_code == 303, r.text
        yield c


def csrf(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


def sign_in(page: Page, base: str, username: str, role: Role, next_path: str) -> None:
    """Log in through the form in Chromium and land on ``next_path``."""
    page.goto(f"{base}/login?next={next_path}")
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORDS[role])
    page.locator("#password").press("Enter")
    page.wait_for_url(f"{base}{next_path}")


def first_connection(live: Live) -> int:
    """The hypervisor connection of CS's first VM (the demo's simulator)."""
    with live.client() as c:
        vms = c.get(f"{API}/vms", headers=live.login("cs-admin", Role.UNIT_ADMIN)).json()["items"]
    return int(vms[0]["connection_id"])


def submit_request(live: Live, system_name: str, hostname: str, connection_id: int, **extra: Any) -> int:
    """A small teaching VM requested by CS's unit admin through the API; its id."""
    body: dict[str, Any] = {
        "system_name": system_name,
        "purpose": "teaching",
        "hostname": hostname,
        "connection_id": connection_id,
        "template_ref": "tpl-rocky-9",
        "vcpus": 1,
        "memory_gib": 2,
        "disk_gib": 40,
        **extra,
    }
    with live.client() as c:
        r = c.post(f"{API}/requests", json=body, headers=live.login("cs-admin", Role.UNIT_ADMIN))
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

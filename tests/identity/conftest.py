"""A live portal for the campus sign-on walks: the app under uvicorn in a thread of the test process,
on a loopback socket bound first, so its ``base_url`` (hence the fixed CAS service URL) names the
real port, and the CAS server's single log-out reaches it. The portal uses the test's database and
settings (``use_settings``), so tests arrange data with the factory and inspect it directly."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from tests.support.slapd import SlapdServer
from vmportal.kit.settings import Settings, use_settings


@dataclass
class Portal:
    url: str
    settings: Settings

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30, trust_env=False)


@pytest.fixture
def start_portal(settings: Settings) -> Iterator[Callable[..., Portal]]:
    from vmportal.app.factory import create_app

    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**overrides: Any) -> Portal:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        configured = Settings(
            **{**settings.model_dump(), "base_url": url, "watch_inventory": False, **overrides}
        )
        use_settings(configured)
        app = create_app(configured, migrate=False)
        # Proxy headers as ``vmportal serve`` sets them: believed from the trusted proxies only
        # (none by default), so the peer address of the socket is the client.
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            proxy_headers=bool(configured.trusted_proxies),
            forwarded_allow_ips=",".join(configured.trusted_proxies) or None,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the portal did not start")
            time.sleep(0.02)
        servers.append((server, thread))
        return Portal(url, configured)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)
    use_settings(settings)


def ldap_settings(server: SlapdServer, **roles: str) -> dict[str, Any]:
    """The portal's LDAP settings for the test directory (StartTLS on the plain port)."""
    from tests.support.campus_people import ADMINS, AUDITORS, OPERATORS, group_dn

    return {
        "ldap_url": server.ldap_url,
        "ldap_ca_file": server.ca_file,
        "ldap_bind_dn": server.service_dn,
        "ldap_bind_password": server.service_password,
        "ldap_user_base": server.people_base,
        "ldap_group_roles": {
            group_dn(ADMINS): "center_admin",
            group_dn(OPERATORS): "center_operator",
            group_dn(AUDITORS): "auditor",
            **roles,
        },
        "ldap_timeout": 5.0,
    }

"""pytest fixtures for the CAS 3.0 test server (django-cas-server, see ``tests/support/cas_server.py``).

Register in the root conftest: ``pytest_plugins = [..., "tests.support.cas_fixtures"]``.

- ``cas_server`` (session): the running :class:`CasServer`, started once per test process (once
  per xdist worker): ``url`` (what a CAS client is configured with), ``login()`` as a browser does,
  ``logout()``, and helpers to add people and change their attributes.
- ``cas`` (function): the same server with its people put back to the campus staff before the test
  (a small file rewritten). Use it in tests that add or change people.

Each login happens in a ``requests.Session`` of its own unless one is passed, so tests never share
a CAS session. When a test using either fails, the tail of the server's log is added to its report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.support.cas_server import CasServer, start_cas_server


@pytest.fixture(scope="session")
def cas_server() -> Iterator[CasServer]:
    with start_cas_server() as server:
        yield server


@pytest.fixture
def cas(cas_server: CasServer) -> CasServer:
    if not cas_server.running:
        pytest.fail(f"the session's CAS server has exited:\n{cas_server.log_tail()}")
    cas_server.reset_people()
    return cas_server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    server = getattr(item, "funcargs", {}).get("cas_server")
    if report.failed and isinstance(server, CasServer):
        report.sections.append(("CAS server log (tail)", server.log_tail()))
    return report

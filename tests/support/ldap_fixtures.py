"""pytest fixtures for the test campus directory (a private slapd, see ``tests/support/slapd.py``).

Register in the root conftest: ``pytest_plugins = [..., "tests.support.ldap_fixtures"]``.

- ``slapd_server`` (session): the running :class:`SlapdServer`, started once per test process
  (once per xdist worker): ports, ``ca_file``, service-account and admin credentials, ``connect()``.
- ``ldap_directory`` (function): the same server's :class:`Directory`, put back to the baseline
  people and groups before the test (one search when the previous test changed nothing, ~0.1 s
  when it did). Use it in every test that changes the directory, and in those that rely on the
  baseline.

When a test using either fails, the tail of slapd's log (connections, operations, results) is
added to its report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.support.slapd import Directory, SlapdServer, start_slapd


@pytest.fixture(scope="session")
def slapd_server() -> Iterator[SlapdServer]:
    with start_slapd() as server:
        yield server


@pytest.fixture
def ldap_directory(slapd_server: SlapdServer) -> Directory:
    if not slapd_server.running:
        pytest.fail(f"the session's slapd has exited:\n{slapd_server.log_tail()}")
    slapd_server.directory.reset()
    return slapd_server.directory


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    server = getattr(item, "funcargs", {}).get("slapd_server")
    if report.failed and isinstance(server, SlapdServer):
        report.sections.append(("slapd log (tail)", server.log_tail()))
    return report

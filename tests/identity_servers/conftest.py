"""Loads the identity-server fixtures for this folder until the root conftest lists them.

The fixtures are meant to be registered once, in ``tests/conftest.py``'s ``pytest_plugins``
(``"tests.support.ldap_fixtures"``, ``"tests.support.cas_fixtures"``). ``pytest_plugins`` is not
allowed in a conftest below the root, so this one imports them as plugins when a run reaches this
folder and they are not registered yet; once they are, it does nothing and can be deleted.
"""

from __future__ import annotations

import pytest

IDENTITY_FIXTURE_PLUGINS = ("tests.support.ldap_fixtures", "tests.support.cas_fixtures")


def pytest_configure(config: pytest.Config) -> None:
    for name in IDENTITY_FIXTURE_PLUGINS:
        if not config.pluginmanager.has_plugin(name):
            config.pluginmanager.import_plugin(name)

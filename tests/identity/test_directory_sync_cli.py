"""``vmportal directory-sync`` against the real directory: a person removed from LDAP loses their
account and sessions; a directory that refuses the service account changes nothing and exits 1."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from tests.identity.conftest import ldap_settings
from tests.support.campus_people import staff
from tests.support.slapd import Directory
from vmportal.app.cli import app
from vmportal.identity import ldap
from vmportal.identity.models import AuthToken, User
from vmportal.kit import db
from vmportal.kit.settings import Settings, use_settings

pytestmark = [
    pytest.mark.xdist_group("identity-servers"),
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]
runner = CliRunner()


def test_directory_sync_retires_a_removed_person(settings: Settings, ldap_directory: Directory) -> None:
    configured = Settings(
        **{**settings.model_dump(), "login_methods": ["ldap"], **ldap_settings(ldap_directory.server)}
    )
    use_settings(configured)
    with db.transaction() as s:
        issued = ldap.login(s, "lisi", staff("lisi").password)
    ldap_directory.remove("lisi")
    result = runner.invoke(app, ["directory-sync"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["retired"] == ["lisi"]
    with db.transaction() as s:
        assert s.exec(select(User).where(User.username == "lisi")).one().active is False
        assert s.exec(select(AuthToken)).one().revoked_at is not None
    assert issued.token


def test_directory_sync_with_a_refusing_directory_changes_nothing(
    settings: Settings, ldap_directory: Directory
) -> None:
    good = Settings(
        **{**settings.model_dump(), "login_methods": ["ldap"], **ldap_settings(ldap_directory.server)}
    )
    use_settings(good)
    with db.transaction() as s:
        ldap.login(s, "lisi", staff("lisi").password)
    ldap_directory.remove("lisi")
    use_settings(Settings(**{**good.model_dump(), "ldap_bind_password": "not-the-service-password"}))
    result = runner.invoke(app, ["directory-sync"])
    assert result.exit_code == 1
    assert "nothing changed" in result.output
    with db.transaction() as s:
        assert s.exec(select(User).where(User.username == "lisi")).one().active is True


def test_beat_runs_the_sync_every_period_unless_turned_off(settings: Settings) -> None:
    from vmportal.app.beat import beat_schedule
    from vmportal.identity import tasks

    entry = beat_schedule(settings)["directory-sync"]
    assert entry == {"task": tasks.SYNC_TASK, "schedule": 900.0}
    off = Settings(**{**settings.model_dump(), "directory_sync_seconds": 0})
    assert "directory-sync" not in beat_schedule(off)


def test_the_embedded_tick_retires_a_disabled_person(settings: Settings, ldap_directory: Directory) -> None:
    from vmportal.identity import tasks

    configured = Settings(
        **{**settings.model_dump(), "login_methods": ["ldap"], **ldap_settings(ldap_directory.server)}
    )
    use_settings(configured)
    with db.transaction() as s:
        ldap.login(s, "lisi", staff("lisi").password)
    ldap_directory.disable("lisi")
    tasks._last_embedded = None  # as at the embedded portal's start
    tasks.embedded_tick()
    with db.transaction() as s:
        assert s.exec(select(User).where(User.username == "lisi")).one().active is False
    ldap_directory.enable("lisi")
    tasks.embedded_tick()  # within the period: nothing runs again
    assert tasks._last_embedded is not None

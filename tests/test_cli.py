"""The ``vmportal`` command line (typer's CliRunner): create-admin, migrate, audit verify/tail, serve."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.factories import Factory
from vmportal.app.cli import app
from vmportal.kit import db
from vmportal.kit.settings import Settings, get_settings

API = "/api/v1"
runner = CliRunner()
STRONG = "Cl1-Admin-Passw0rd"


def _login(client: TestClient, username: str, password: str) -> int:
    return client.post(f"{API}/auth/login", json={"username": username, "password": password}).status_code


def test_create_admin_then_login(client: TestClient, settings: Settings) -> None:
    result = runner.invoke(app, ["create-admin", "root.admin", "--password", STRONG])
    assert result.exit_code == 0, result.output
    assert "created center_admin 'root.admin'" in result.output
    assert _login(client, "root.admin", STRONG) == 200
    me = client.post(f"{API}/auth/login", json={"username": "root.admin", "password": STRONG}).json()["user"]
    assert me["role"] == "center_admin"
    again = runner.invoke(app, ["create-admin", "root.admin", "--password", STRONG])
    assert again.exit_code == 1
    assert "taken" in again.output


def test_create_admin_refuses_a_weak_password_naming_the_rule(settings: Settings) -> None:
    result = runner.invoke(app, ["create-admin", "weak.admin", "--password", "short"])
    assert result.exit_code == 1
    assert "min_length" in result.output
    result = runner.invoke(app, ["create-admin", "weak.admin", "--password", "onlylowercaseletters"])
    assert result.exit_code == 1
    assert "complexity" in result.output
    result = runner.invoke(app, ["create-admin", "Bad Name", "--password", STRONG])
    assert result.exit_code == 1
    assert "username" in result.output


def test_create_admin_generated_or_prompted(client: TestClient, settings: Settings) -> None:
    result = runner.invoke(app, ["create-admin", "gen.admin", "--generate"])
    assert result.exit_code == 0, result.output
    password = result.output.split("password (shown once): ", 1)[1].strip()
    assert _login(client, "gen.admin", password) == 200
    result = runner.invoke(app, ["create-admin", "typed.admin"], input=f"{STRONG}\n{STRONG}\n")
    assert result.exit_code == 0, result.output
    assert _login(client, "typed.admin", STRONG) == 200
    both = runner.invoke(app, ["create-admin", "x.admin", "--generate", "--password", STRONG])
    assert both.exit_code == 2


def test_audit_verify_and_tail(client: TestClient, factory: Factory, settings: Settings) -> None:
    headers = factory.login(client, factory.user("center_admin", username="chief"))
    assert (
        client.post(f"{API}/units", json={"code": "PHY", "name_zh": "物理学院"}, headers=headers).status_code
        == 201
    )
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "audit chain OK: 2 rows" in ok.output
    tail = runner.invoke(app, ["audit", "tail", "-n", "5"])
    assert tail.exit_code == 0
    lines = tail.output.strip().splitlines()
    assert len(lines) == 2
    assert "chief (center_admin) login" in lines[0]
    assert "unit.create unit:" in lines[1]
    with db.engine().begin() as conn:
        conn.execute(sa.text("UPDATE audit_entry SET actor = 'someone-else' WHERE id = 2"))
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1
    assert "first broken link: row 2 (row 2 was altered after it was written)" in broken.output


def test_migrate(settings: Settings) -> None:
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert "revision" in result.output


def test_serve_runs_uvicorn_on_the_app_factory(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: calls.append((target, kw)))
    for name in ("VMPORTAL_HOST", "VMPORTAL_PORT", "VMPORTAL_DEMO"):
        monkeypatch.setenv(name, "")  # restored (removed) when the test ends
    result = runner.invoke(app, ["serve", "--host", "127.0.0.1", "--port", "8123", "--demo"])
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8123/" in result.output
    assert "demo" in result.output
    target, kwargs = calls[0]
    assert target == "vmportal.app.factory:create_app"
    assert (kwargs["factory"], kwargs["host"], kwargs["port"], kwargs["reload"]) == (
        True,
        "127.0.0.1",
        8123,
        False,
    )
    assert get_settings().demo is True
    assert get_settings().port == 8123


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "migrate", "create-admin", "audit"):
        assert command in result.output

"""``vmportal sync`` (typer's CliRunner): one JSON report per connection on stdout, exit status 1
when a connection could not be reconciled, so cron or a monitoring check notices."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.api.test_lifecycle_vsphere import register_vsphere, staff
from tests.factories import Factory
from tests.support.vcsim import VcsimServer
from vmportal.app.cli import app

pytestmark = pytest.mark.vcsim

runner = CliRunner()


def reports(output: str) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return {r["connection"]: r for r in lines}


def test_sync_reports_each_connection_and_fails_on_an_unreachable_one(
    client: TestClient, factory: Factory, vcsim: VcsimServer
) -> None:
    people = staff(client, factory)
    conn = register_vsphere(people, vcsim)

    result = runner.invoke(app, ["sync"])
    assert result.exit_code == 0, result.output
    by_name = reports(result.stdout)
    assert set(by_name) == {"simulator", conn["name"]}
    first = by_name[conn["name"]]
    assert first["connection_id"] == conn["id"] and first["error"] == ""
    assert first["seen"] >= vcsim.topology.expected_vms
    assert len(first["unregistered"]) == first["seen"]  # nothing of vcsim's was known to the portal

    # Only one connection, and nothing new the second time.
    result = runner.invoke(app, ["sync", "--connection-id", str(conn["id"])])
    assert result.exit_code == 0, result.output
    again = reports(result.stdout)
    assert list(again) == [conn["name"]]
    assert again[conn["name"]]["unregistered"] == [] and again[conn["name"]]["seen"] == first["seen"]

    # A vCenter that is down: its report says why, the others still sync, the exit status is 1.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    down = register_vsphere(people, vcsim, name="vc-down", url=f"http://127.0.0.1:{closed}/sdk")
    result = runner.invoke(app, ["sync"])
    assert result.exit_code == 1, result.output
    by_name = reports(result.stdout)
    assert set(by_name) == {"simulator", conn["name"], "vc-down"}
    assert "refused the connection" in by_name["vc-down"]["error"]
    assert by_name["vc-down"]["connection_id"] == down["id"] and by_name["vc-down"]["seen"] == 0
    assert by_name[conn["name"]]["error"] == "" and by_name["simulator"]["error"] == ""
    assert vcsim.password not in result.output

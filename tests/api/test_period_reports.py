"""The reports by period on the database's own clock arithmetic (this file is in the PostgreSQL lane):
a period is Beijing dates, so a delivery at 00:30 on the 1st in Beijing (16:30 UTC the day before)
belongs to the 1st and to that month, on SQLite and on PostgreSQL alike. The full behaviour of the
reports is in tests/reports/test_period_reports.py."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from tests.api.test_requests import make_portal
from tests.factories import Factory
from tests.security.helpers import incidents, post, register, suricata_c2
from vmportal.incidents.models import Incident
from vmportal.kit import db
from vmportal.request.models import VMRequest

#: 2026-08-01 00:30 in Beijing.
BEIJING_FIRST = datetime(2026, 7, 31, 16, 30, tzinfo=UTC)


def test_a_period_is_beijing_days_and_months(client: TestClient, factory: Factory) -> None:
    p = make_portal(client, factory)
    req = p.submitted(hostname="night-owl")
    assert p.act("operator", req["id"], "approve").status_code == 200
    vm = factory.vm(p.unit)
    assert vm.ip_address
    source = register(client, p.heads["center_admin"], "suricata")
    assert post(client, source, suricata_c2(vm.ip_address)).status_code == 202
    [incident] = incidents(client, p.heads["center_admin"], vm_id=vm.id)
    with db.transaction() as s:
        row = s.get(VMRequest, req["id"])
        assert row is not None
        row.submitted_at, row.due_at, row.delivered_at = (
            datetime(2026, 7, 28, tzinfo=UTC),
            datetime(2026, 8, 4, tzinfo=UTC),
            BEIJING_FIRST,
        )
        s.add(row)
        found = s.get(Incident, incident["id"])
        assert found is not None
        found.created_at = BEIJING_FIRST
        s.add(found)

    def delivered(since: str, until: str) -> int:
        r = p.get("auditor", f"/reports/provisioning?since={since}&until={until}&unit_id={p.unit.id}")
        assert r.status_code == 200, r.text
        [row] = r.json()["rows"]
        return int(row["delivered"])

    assert delivered("2026-08-01", "2026-08-01") == 1
    assert delivered("2026-07-31", "2026-07-31") == 0  # the UTC date is not the unit's date
    late = p.get("auditor", "/reports/provisioning?since=2026-08-01&until=2026-08-31").json()
    assert late["lists"]["late"]["rows"] == []  # delivered before its due time
    months = {
        row["month"]: row["total"]
        for row in p.get("admin", "/reports/incidents-monthly?since=2026-07-01&until=2026-08-31").json()[
            "rows"
        ]
    }
    assert months == {"2026-07": 0, "2026-08": 1}

"""Many users at once on one portal, embedded (SQLite) and on PostgreSQL: 200 requests in flight
together — reads, 50 approvals of one request, 50 power operations on one VM — answer without a 5xx,
in order and exactly once, and the provisioning they start finishes (no task lost to a busy
database). Timings are the benchmark's business (``python -m bench.concurrency``); this checks what a
user notices: no error page, one approval, the VM delivered."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from policies.roles import Role
from tests.hardening.conftest import API, Live
from tests.production.harness import wait_for


def _submit(live: Live, unit_admin: dict[str, str]) -> int:
    with live.client() as c:
        template = c.get(f"{API}/templates", headers=unit_admin).json()[0]
        r = c.post(
            f"{API}/requests",
            json={
                "system_name": "并发测试实验平台",
                "purpose": "teaching",
                "description": "并发压力测试用的教学实验环境",
                "hostname": "burst-lab",
                "connection_id": template["connection_id"],
                "template_ref": template["ref"],
                "vcpus": 1,
                "memory_gib": 1,
                "disk_gib": 40,
            },
            headers=unit_admin,
        )
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


def _running_vm(live: Live, unit_admin: dict[str, str]) -> int:
    with live.client() as c:
        vms = c.get(f"{API}/vms", headers=unit_admin).json()["items"]
    return int(next(v["id"] for v in vms if v["power_state"] == "running"))


async def _burst(live: Live, calls: list[tuple[str, str, dict[str, str], Any]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=live.base_url, timeout=120, limits=limits) as client:
        start = asyncio.Event()

        async def one(method: str, path: str, headers: dict[str, str], body: Any) -> httpx.Response:
            await start.wait()
            return await client.request(method, path, headers=headers, json=body)

        tasks = [asyncio.create_task(one(*call)) for call in calls]
        await asyncio.sleep(0.2)  # every task waiting at the line
        start.set()
        return list(await asyncio.gather(*tasks))


@pytest.mark.parametrize("portal", ["live", "live_pg"])
def test_200_requests_at_once_answer_without_a_server_error(
    portal: str, request: pytest.FixtureRequest
) -> None:
    live: Live = request.getfixturevalue(portal)
    unit_admin = live.login("cs-admin", Role.UNIT_ADMIN)
    operator = live.login("operator", Role.CENTER_OPERATOR)
    request_id = _submit(live, unit_admin)
    vm_id = _running_vm(live, unit_admin)
    calls: list[tuple[str, str, dict[str, str], Any]] = []
    calls += [("GET", f"{API}/auth/me", unit_admin, None)] * 60
    calls += [("GET", f"{API}/vms", unit_admin, None)] * 40
    calls += [("POST", f"{API}/requests/{request_id}/approve", operator, None)] * 50
    calls += [("POST", f"{API}/vms/{vm_id}/power", unit_admin, {"action": a}) for a in ["stop", "start"] * 25]
    answers = asyncio.run(_burst(live, calls))

    statuses = Counter(r.status_code for r in answers)
    assert all(s < 500 for s in statuses), (statuses, [r.text for r in answers if r.status_code >= 500][:3])
    reads = answers[:100]
    assert {r.status_code for r in reads} == {200}
    approvals = Counter(r.status_code for r in answers[100:150])
    assert approvals == {200: 1, 409: 49}, approvals
    powers = answers[150:]
    assert {r.status_code for r in powers} <= {202, 409}
    assert sum(r.status_code == 202 for r in powers) >= 1

    def delivered() -> bool:
        with live.client() as c:
            return c.get(f"{API}/requests/{request_id}", headers=operator).json()["state"] == "delivered"

    wait_for(delivered, timeout=60, what="the approved request delivered", describe=live.proc.tail)


@pytest.mark.parametrize("portal", ["live", "live_pg"])
def test_a_flood_of_wrong_log_ins_does_not_stop_anyone_else(
    portal: str, request: pytest.FixtureRequest
) -> None:
    live: Live = request.getfixturevalue(portal)
    auditor = live.login("auditor", Role.AUDITOR)
    calls: list[tuple[str, str, dict[str, str], Any]] = []
    calls += [
        ("POST", f"{API}/auth/login", {}, {"username": f"nobody-{i}", "password": "wrong-password"})
        for i in range(20)
    ]
    calls += [("GET", f"{API}/auth/me", auditor, None)] * 20
    answers = asyncio.run(_burst(live, calls))
    assert all(r.status_code in (401, 429) for r in answers[:20]), [r.status_code for r in answers[:20]]
    assert {r.status_code for r in answers[20:]} == {200}

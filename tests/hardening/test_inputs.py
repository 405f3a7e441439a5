"""Probes of the live portal's inputs through its own OpenAPI description: every integer parameter
at 2^63 (and below -2^63) answers 422 naming it, booleans are not numbers nor numbers booleans, and
the description is whole (every reference resolves, every operation lists the error statuses it can
answer, with the one error envelope)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from policies.roles import Role
from tests.hardening.conftest import API, Live

pytestmark = pytest.mark.xdist_group("live")

TOO_BIG = 2**63
TOO_SMALL = -(2**63) - 1
_LATIN_WORD = re.compile(r"[A-Za-z]{3,}")


def _spec(live: Live) -> dict[str, Any]:
    with live.client() as c:
        r = c.get("/openapi.json")
    assert r.status_code == 200
    return r.json()


def _integer_params(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str]]:
    found = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            for param in op.get("parameters", []):
                schema = param.get("schema", {})
                kinds = {schema.get("type")} | {b.get("type") for b in schema.get("anyOf", [])}
                if "integer" in kinds and param["in"] in ("path", "query"):
                    found.append((method, path, op, param["name"]))
    return found


def _url(path: str, op: dict[str, Any], name: str, value: int) -> tuple[str, dict[str, Any]]:
    """The operation's URL with ``value`` in parameter ``name`` and 1 in every other path one."""
    query: dict[str, Any] = {}
    for param in op.get("parameters", []):
        if param["in"] == "path":
            path = path.replace("{" + param["name"] + "}", str(value if param["name"] == name else 1))
        elif param["name"] == name:
            query[name] = value
    return path, query


@pytest.mark.parametrize("value", [TOO_BIG, TOO_SMALL], ids=["2^63", "-2^63-1"])
def test_every_integer_parameter_out_of_64_bits_is_a_422_naming_it(live: Live, value: int) -> None:
    spec = _spec(live)
    params = _integer_params(spec)
    assert len(params) > 60, "the probe should see the API's integer parameters"
    admin = live.login("center-admin", Role.CENTER_ADMIN)
    wrong: list[str] = []
    with live.client(headers=admin) as c:
        for method, path, op, name in params:
            url, query = _url(path, op, name, value)
            r = c.request(method.upper(), url, params=query, json={} if "requestBody" in op else None)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            fields = [f["field"] for f in body.get("error", {}).get("fields", [])]
            if (
                r.status_code != 422
                or name not in fields
                or _LATIN_WORD.search(body["error"]["message_zh"].split("：", 1)[-1].replace(name, ""))
            ):
                wrong.append(f"{method.upper()} {url} {query}: {r.status_code} {r.text[:160]}")
    assert not wrong, "\n".join(wrong)


def test_the_description_states_the_bounds(live: Live) -> None:
    spec = _spec(live)
    for _, path, op, name in _integer_params(spec):
        schema = next(p["schema"] for p in op["parameters"] if p["name"] == name)
        branches = [schema, *schema.get("anyOf", [])]
        ints = [b for b in branches if b.get("type") == "integer"]
        assert all(b.get("maximum", TOO_BIG) < TOO_BIG for b in ints), (path, name, schema)
        assert all(b.get("minimum", TOO_SMALL) > TOO_SMALL for b in ints), (path, name, schema)


def test_true_is_not_one_vcpu_and_a_number_is_not_a_boolean(live: Live) -> None:
    unit_admin = live.login("cs-admin", Role.UNIT_ADMIN)
    center = live.login("center-admin", Role.CENTER_ADMIN)
    with live.client(headers=unit_admin) as c:
        before = c.get(f"{API}/requests").json()["total"]
        r = c.post(f"{API}/requests", json={"vcpus": True, "memory_mb": 4096, "disk_gb": 40})
        assert r.status_code == 422, r.text
        assert "vcpus" in [f["field"] for f in r.json()["error"]["fields"]]
        assert "应为整数" in r.json()["error"]["message_zh"]
        assert c.get(f"{API}/requests").json()["total"] == before, "nothing was created"
    with live.client(headers=center) as c:
        users = c.get(f"{API}/users").json()
        users = users["items"] if isinstance(users, dict) else users
        target = next(u for u in users if u["username"] == "auditor")
        for value in (0, 1, 1.0):
            r = c.patch(f"{API}/users/{target['id']}", json={"active": value})
            assert r.status_code == 422, (value, r.text)
            assert r.json()["error"]["fields"][0]["field"] == "active"
            assert "布尔" in r.json()["error"]["message_zh"]
        again = c.get(f"{API}/users")
        assert again.status_code == 200
        rows = again.json()
        rows = rows["items"] if isinstance(rows, dict) else rows
        assert next(u for u in rows if u["username"] == "auditor")["active"] is True


def test_every_reference_resolves_and_every_operation_lists_its_errors(live: Live) -> None:
    spec = _spec(live)
    schemas = spec["components"]["schemas"]
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', httpx.Response(200, json=spec).text))
    assert refs - set(schemas) == set()
    for path, item in spec["paths"].items():
        if not path.startswith(API):
            continue
        for method, op in item.items():
            responses = op["responses"]
            for status in ("401", "403", "404", "422", "503"):
                assert status in responses, (method, path, status)
                content = responses[status]["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/ErrorEnvelope"}
            if "requestBody" in op:
                assert {"400", "413", "415"} <= set(responses), (method, path)

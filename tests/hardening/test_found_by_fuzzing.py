"""The server errors the OpenAPI fuzzer found, one test each, on the in-process app: each answered
500 (a ``TypeError`` or a ``UnicodeEncodeError`` escaping) and now answers 422 naming the field and
its rule, in both languages.

- A JSON ``null`` in an optional integer field with a bound (``pool_id``, ``connection_id``,
  ``system_id``: ``int | None = Field(None, gt=0)``): the app-wide integer rules of
  :mod:`vmportal.app.inputs` were put on the union, so pydantic compared ``None > 0``. The fuzzer
  reported these with the path ids it happened to send (``null,null``); the body was the cause.
- A lone surrogate (``"\\ud800"``: valid JSON, not valid Unicode) in a field's name, or in a
  free-form value: it reached the UTF-8 encoding of the answer (or the database).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import Factory

API = "/api/v1"


def _admin(client: TestClient, factory: Factory) -> dict[str, str]:
    return factory.login(client, factory.user("center_admin"))


def _fields(r: Any) -> dict[str, str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == "validation_error" and error["message"] and error["message_zh"]
    return {f["field"]: f["rule"] for f in error["fields"]}


@pytest.mark.parametrize(
    ("method", "path", "param", "body"),
    [
        ("PATCH", "/pools/{id}", "pool_id", {"connection_id": None, "name": None}),
        ("POST", "/inventory/vms/{id}/assign", "vm_id", {"unit_id": 1, "system_id": None}),
        ("POST", "/requests/{id}/approve", "request_id", {"pool_id": None}),
    ],
    ids=["pool-patch", "inventory-assign", "request-approve"],
)
def test_null_in_an_optional_bounded_integer_is_no_server_error(
    client: TestClient, factory: Factory, method: str, path: str, param: str, body: dict[str, Any]
) -> None:
    h = _admin(client, factory)
    pool = factory.pool(cidr="10.8.0.0/24")
    r = client.request(method, API + path.format(id="null,null"), json=body, headers=h)
    assert _fields(r).get(param) == "int_parsing"
    r = client.request(method, API + path.format(id=pool.id), json=body, headers=h)
    assert r.status_code < 500, r.text  # 200, or 404 / 409 for a VM or request that is not there


def test_null_where_an_optional_integer_allows_it_means_not_given(
    client: TestClient, factory: Factory
) -> None:
    h = _admin(client, factory)
    pool = factory.pool(cidr="10.8.0.0/24")
    r = client.patch(f"{API}/pools/{pool.id}", json={"connection_id": None}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["connection_id"] is None
    body = {"name": "p", "cidr": "10.9.0.0/24", "gateway": "10.9.0.1", "connection_id": None}
    r = client.post(f"{API}/pools", json=body, headers=h)
    assert r.status_code == 201, r.text


def test_zero_in_an_optional_bounded_integer_names_the_rule_in_both_languages(
    client: TestClient, factory: Factory
) -> None:
    h = _admin(client, factory)
    pool = factory.pool(cidr="10.8.0.0/24")
    r = client.patch(f"{API}/pools/{pool.id}", json={"connection_id": 0}, headers=h)
    assert _fields(r) == {"connection_id": "greater_than"}
    assert "必须大于 0" in r.json()["error"]["message_zh"]
    r = client.patch(f"{API}/pools/{pool.id}", json={"connection_id": True}, headers=h)
    assert _fields(r) == {"connection_id": "int_type"}  # a boolean is not a number, null or not


def _raw(client: TestClient, method: str, url: str, text: str, h: dict[str, str]) -> Any:
    return client.request(
        method, url, content=text.encode(), headers={**h, "content-type": "application/json"}
    )


LONE = "\\ud800"  # as it stands in the JSON text: the escape of a lone (high) surrogate


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"name": "' + LONE + '", "cidr": "10.9.0.0/24", "gateway": "10.9.0.1"}', "name"),
        ('{"name": "p", "cidr": "10.9.0.0/24", "gateway": "10.9.0.1", "' + LONE + '": 1}', "\\ud800"),
        ('{"name": "p", "cidr": "10.9.0.0/24", "gateway": "10.9.0.1", "dns": ["' + LONE + '"]}', "dns.0"),
        (
            '{"name": "p", "cidr": "10.9.0.0/24", "gateway": "10.9.0.1", "excluded": ["\\udfff x"]}',
            "excluded.0",
        ),
    ],
    ids=["value", "key", "list-item", "low-surrogate"],
)
def test_a_lone_surrogate_in_a_json_body_is_a_422_naming_the_field(
    client: TestClient, factory: Factory, body: str, field: str
) -> None:
    json.loads(body)  # valid JSON
    h = _admin(client, factory)
    r = _raw(client, "POST", f"{API}/pools", body, h)
    fields = _fields(r)
    assert fields.get(field) == "string_unicode", fields
    assert "不成对的代理项" in r.json()["error"]["message_zh"]
    assert client.get(f"{API}/pools", headers=h).json() == []  # nothing written


def test_a_proper_surrogate_pair_is_text_like_any_other(client: TestClient, factory: Factory) -> None:
    h = _admin(client, factory)
    body = '{"name": "pool-\\ud83d\\ude00", "cidr": "10.9.0.0/24", "gateway": "10.9.0.1"}'  # an emoji
    r = _raw(client, "POST", f"{API}/pools", body, h)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "pool-\U0001f600"

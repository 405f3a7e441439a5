"""A 405 names, in ``Allow``, every method its address answers (RFC 9110 §15.5.6).

Starlette raises the 405 from the first route whose path matches and names that route's methods
only, so ``PUT /api/v1/pools`` (``GET`` and ``POST`` are declared apart) answered ``Allow: GET``;
the error handler matches the address again for every method. Checked for every address of the
OpenAPI against the methods it declares, and for the pages and the portal's own routes.
"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.factories import Factory

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _allow(r: object) -> set[str]:
    header = r.headers.get("allow", "")  # type: ignore[attr-defined]
    return {m.strip() for m in header.split(",") if m.strip()}


def test_every_405_of_the_api_names_every_method_the_address_declares(
    client: TestClient, factory: Factory
) -> None:
    h = factory.login(client, factory.user("center_admin"))
    spec = client.get("/openapi.json").json()
    wrong: list[str] = []
    checked = 0
    # An address may be served by two templates (POST /alerts/{source}, GET /alerts/{alert_id}).
    templates = [
        (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"), item)
        for path, item in spec["paths"].items()
    ]
    for path in spec["paths"]:
        url = re.sub(r"\{[^}]+\}", "1", path)
        declared = {
            m.upper() for rx, item in templates if rx.match(url) for m in item if m.upper() in _METHODS
        }
        for method in sorted(set(_METHODS) - declared):
            r = client.request(method, url, headers=h)
            checked += 1
            if r.status_code != 405 or not declared <= _allow(r) or _allow(r) - declared - {"HEAD"}:
                wrong.append(
                    f"{method} {url}: {r.status_code} Allow={r.headers.get('allow')} (declared {declared})"
                )
            elif r.json()["error"]["message_zh"] != "该地址不支持此请求方法":
                wrong.append(f"{method} {url}: {r.text[:200]}")
    assert checked > 100
    assert not wrong, "\n".join(wrong)


def test_an_address_served_by_several_routes_names_all_their_methods(client: TestClient) -> None:
    r = client.put("/api/v1/pools")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"
    r = client.put("/api/v1/pools/1")
    assert r.headers["allow"] == "GET, PATCH, DELETE"
    r = client.get("/api/v1/requests/1/approve")
    assert r.headers["allow"] == "POST"


def test_pages_and_plain_routes_name_their_methods_too(client: TestClient) -> None:
    assert client.put("/login").headers["allow"] == "GET, POST"
    assert client.post("/healthz").headers["allow"] == "GET"
    assert (
        client.delete("/openapi.json").headers["allow"] == "GET, HEAD"
    )  # Starlette's own route answers HEAD

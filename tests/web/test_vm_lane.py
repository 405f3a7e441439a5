"""The page lane (vmportal/web/vm_lane.py) answers ``GET /vms`` exactly as the router's page does.

On PostgreSQL (``VMPORTAL_TEST_DB=postgres``) each request below is sent twice: once as it comes
(the lane answers it from the VM reader: checked with the reader's ``answered`` count) and once
with the reader taken away (the router's page answers it from the ORM); the two answers must have
the same status, the same headers (but the request id) and the same bytes. For the full page and
the HTMX table, both languages, page 2 and past the end, a search, each sort, each role. A unit's
users never see another unit's VM through it, and whatever it does not answer exactly (a dead,
revoked or expired session, a disabled account, a query the page reads its own way, another
method) goes to the router with the router's own answer. On SQLite there is no reader: the page is
the router's, and the layout's placeholders are checked against Jinja's own rendering everywhere.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlmodel import select
from starlette.requests import Request

from policies.roles import Role
from tests.conftest import _use_postgres
from tests.factories import Factory
from vmportal.identity.models import AuthToken, User
from vmportal.identity.service import token_digest
from vmportal.kit import db
from vmportal.kit.db import utcnow
from vmportal.vm.models import VM
from vmportal.web import common, vm_list_view
from vmportal.web.i18n import use_locale
from vmportal.web.session import COOKIE, csrf_for

postgres_only = pytest.mark.skipif(not _use_postgres(), reason="the page lane reads through PostgreSQL")

NAMES = ["web-01", "db<&>\"'", "数据库-03", "x%_y", "Mail-05", "a\\b"]
POWER = ["running", "stopped", "suspended", "unknown", "poweredOn"]
SECURITY = ["normal", "suspended", "rectification_submitted", "restored", "odd"]


@pytest.fixture
def estate(client: TestClient, factory: Factory) -> dict[str, Any]:
    """Unit A with 120 VMs (three pages), unit B with 7, 3 unregistered; a login per role."""
    a, b = factory.unit("CS"), factory.unit("LAW")
    conn = factory.connection()
    assert conn.id is not None
    rows: list[VM] = []
    for i in range(130):
        unit = a if i < 120 else (b if i < 127 else None)
        rows.append(
            VM(
                unit_id=unit.id if unit else None,
                registered=unit is not None,
                connection_id=conn.id,
                hypervisor_ref=f"lane-{i}",
                name=f"{NAMES[i % len(NAMES)]}-{i:03d}",
                hostname=f"h{i}",
                vcpus=1,
                memory_gib=1,
                disk_gib=10,
                ip_address=None if i % 7 == 3 else f"10.9.{i // 200}.{i % 200}",
                power_state=POWER[i % len(POWER)],
                security_state=SECURITY[i % len(SECURITY)],
                lifecycle="decommissioned" if i % 11 == 5 else "active",
            )
        )
    with db.transaction() as session:
        session.add_all(rows)
        session.flush()
        ids = {"a": [v.id for v in rows[:120]], "b": [v.id for v in rows[120:127]]}
    admin = factory.user("unit_admin", a)
    with db.transaction() as session:
        user = session.get(User, admin.id)
        assert user is not None
        user.display_name = 'Zhang <San> & "co"'
        session.add(user)
    blank = factory.user("unit_admin", a)
    with db.transaction() as session:
        user = session.get(User, blank.id)
        assert user is not None
        user.display_name = ""
        session.add(user)
    tokens = {
        "unit_admin": _token(factory.login(client, admin)),
        "blank_admin": _token(factory.login(client, blank)),
        "unit_lead": _token(factory.login(client, factory.user("unit_lead", a))),
        "b_admin": _token(factory.login(client, factory.user("unit_admin", b))),
        "center_operator": _token(factory.login(client, factory.user("center_operator"))),
        "auditor": _token(factory.login(client, factory.user("auditor"))),
    }
    return {"ids": ids, "tokens": tokens, "admin_id": admin.id}


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].split()[1]


def _headers(token: str, lang: str | None, hx: bool) -> dict[str, str]:
    cookie = f"{COOKIE}={token}" + (f"; vmportal_lang={lang}" if lang else "")
    headers = {"Cookie": cookie}
    if hx:
        headers["HX-Request"] = "true"
    return headers


def _answered(client: TestClient) -> int:
    reader = client.app.state.vm_reader  # type: ignore[attr-defined]
    return 0 if reader is None else int(reader.answered)


def _router(client: TestClient, path: str, headers: dict[str, str], method: str = "GET") -> Any:
    """The router's answer: the same request with the reader taken away."""
    state = client.app.state  # type: ignore[attr-defined]
    reader, state.vm_reader = state.vm_reader, None
    try:
        return client.request(method, path, headers=headers, follow_redirects=False)
    finally:
        state.vm_reader = reader


def _comparable(response: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(k, v) for k, v in response.headers.raw if k.lower() != b"x-request-id"]
    return response.status_code, headers, response.content


def _lane_equals_router(client: TestClient, path: str, token: str, lang: str | None, hx: bool) -> str:
    headers = _headers(token, lang, hx)
    before = _answered(client)
    lane = client.get(path, headers=headers, follow_redirects=False)
    assert _answered(client) == before + 1, f"{path}: not the lane's answer"
    router = _router(client, path, headers)
    assert _answered(client) == before + 1
    assert _comparable(lane) == _comparable(router), path
    assert lane.status_code == 200
    return lane.text


@postgres_only
@pytest.mark.parametrize("hx", [False, True], ids=["page", "table"])
@pytest.mark.parametrize("lang", ["zh_CN", "en", None])
def test_the_lane_answers_the_routers_bytes(
    client: TestClient, estate: dict[str, Any], lang: str, hx: bool
) -> None:
    token = estate["tokens"]["unit_admin"]
    paths = [
        "/vms",
        "/vms?page=2",
        "/vms?page=3",
        "/vms?page=9",
        "/vms?q=web",
        "/vms?q=%20%25_%20",
        "/vms?q=%E6%95%B0%E6%8D%AE%E5%BA%93&sort=-name",
        "/vms?q=%3C%26%3E",
        "/vms?q=",
        "/vms?sort=bogus",
        "/vms?sort=name&q=0&page=2",
        "/vms?page=1&sort=-ip_address",
    ]
    paths += [
        f"/vms?sort={s}" for s in ("id", "-id", "name", "-name", "ip_address", "-ip_address", "created_at")
    ]
    for path in paths:
        _lane_equals_router(client, path, token, lang, hx)


@postgres_only
@pytest.mark.parametrize("who", ["blank_admin", "unit_lead", "b_admin", "center_operator", "auditor"])
def test_every_role_gets_the_routers_page(client: TestClient, estate: dict[str, Any], who: str) -> None:
    token = estate["tokens"][who]
    for hx in (False, True):
        for path in ("/vms", "/vms?page=2&sort=-name", "/vms?q=db"):
            for lang in ("en", "zh_CN"):
                _lane_equals_router(client, path, token, lang, hx)


@postgres_only
def test_a_unit_admin_sees_only_the_units_vms(client: TestClient, estate: dict[str, Any]) -> None:
    for who, own, other in (("unit_admin", "a", "b"), ("b_admin", "b", "a")):
        seen: list[int] = []
        for page in range(1, 5):
            text = _lane_equals_router(client, f"/vms?page={page}", estate["tokens"][who], "en", True)
            seen += [int(i) for i in re.findall(r'<tr data-vm="(\d+)">', text)]
        assert seen and set(seen) <= set(estate["ids"][own])
        assert not set(seen) & set(estate["ids"][other])
        assert len(seen) == len(set(seen))
        # a search for a name of the other unit finds nothing
        other_name = "-12" if own == "a" else "-00"  # names end in the VM's number (120… are B's)
        text = _lane_equals_router(client, f"/vms?q={other_name}", estate["tokens"][who], "en", True)
        found = {int(i) for i in re.findall(r'<tr data-vm="(\d+)">', text)}
        assert found <= set(estate["ids"][own])


@postgres_only
def test_a_page_is_one_statement(client: TestClient, estate: dict[str, Any]) -> None:
    reader = client.app.state.vm_reader  # type: ignore[attr-defined]
    before = reader.statements
    r = client.get("/vms", headers=_headers(estate["tokens"]["unit_admin"], "en", False))
    assert r.status_code == 200 and reader.statements == before + 1
    assert "Zhang &lt;San&gt; &amp; &#34;co&#34;" in r.text
    assert f'"X-CSRF-Token": "{csrf_for(estate["tokens"]["unit_admin"])}"' in r.text
    assert (
        r.headers["content-language"] == "en" and "default-src 'self'" in r.headers["content-security-policy"]
    )


def _end_session(estate: dict[str, Any], who: str, **change: Any) -> None:
    digest = token_digest(estate["tokens"][who])
    with db.transaction() as session:
        token = session.exec(select(AuthToken).where(AuthToken.token_sha256 == digest)).one()
        for key, value in change.items():
            setattr(token, key, value)
        session.add(token)


@pytest.mark.parametrize("how", ["revoked", "expired", "disabled", "unknown", "none"])
def test_a_session_that_is_not_live_goes_to_the_router(
    client: TestClient, estate: dict[str, Any], how: str
) -> None:
    token = estate["tokens"]["unit_admin"]
    if how == "revoked":
        _end_session(estate, "unit_admin", revoked_at=utcnow())
    elif how == "expired":
        _end_session(estate, "unit_admin", expires_at=utcnow() - timedelta(seconds=1))
    elif how == "disabled":
        with db.transaction() as session:
            user = session.get(User, estate["admin_id"])
            assert user is not None
            user.active = False
            session.add(user)
    elif how == "unknown":
        token = "not-a-token"
    headers = _headers(token, "en", False) if how != "none" else {}
    before = _answered(client)
    r = client.get("/vms?page=2", headers=headers, follow_redirects=False)
    assert _answered(client) == before
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/vms?page=2"
    assert _comparable(r) == _comparable(_router(client, "/vms?page=2", headers))


@pytest.mark.parametrize(
    "query",
    [
        "page=abc",
        "page=0",
        "page=-1",
        "page=",
        "page=01",
        "x=1",
        "q=a&q=b",
        "page=99999999999999999999",
        "q=%FF",
    ],
)
def test_a_query_the_lane_does_not_read_goes_to_the_router(
    client: TestClient, estate: dict[str, Any], query: str
) -> None:
    headers = _headers(estate["tokens"]["unit_admin"], "en", False)
    before = _answered(client)
    r = client.get(f"/vms?{query}", headers=headers, follow_redirects=False)
    assert _answered(client) == before
    assert _comparable(r) == _comparable(_router(client, f"/vms?{query}", headers))
    assert r.status_code in (200, 422)


def test_another_method_goes_to_the_router(client: TestClient, estate: dict[str, Any]) -> None:
    headers = _headers(estate["tokens"]["unit_admin"], "en", False)
    before = _answered(client)
    for method in ("POST", "HEAD"):
        r = client.request(method, "/vms", headers=headers, follow_redirects=False)
        assert r.status_code == _router(client, "/vms", headers, method).status_code
    assert _answered(client) == before


def test_sqlite_has_no_lane_and_the_router_answers(client: TestClient, estate: dict[str, Any]) -> None:
    reader = client.app.state.vm_reader  # type: ignore[attr-defined]
    assert (reader is not None) == _use_postgres()
    r = client.get("/vms?page=2&sort=-name", headers=_headers(estate["tokens"]["unit_admin"], "en", False))
    assert r.status_code == 200 and "page 2 of 3" in r.text
    assert r.text.count("<tr data-vm=") == 50 - 0


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
@pytest.mark.parametrize("root_path", ["", "/portal"])
def test_the_layouts_placeholders_render_as_jinja_does(lang: str, root_path: str) -> None:
    """The layout rendered once with placeholders and filled per request equals vms.html rendered by
    Jinja with the request's own values (escaping, URL quoting, |tojson included)."""
    name, q, sort, token = "A <b>&\"'", " x<&>\"' 数据 %20&q=1 ", "-name", "tok"
    query = "q=%3Cx%3E&page=2&sort=-name"
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/vms",
        "root_path": root_path,
        "query_string": query.encode(),
        "headers": [(b"host", b"portal.example")],
        "scheme": "http",
        "server": ("portal.example", 80),
    }
    request = Request(scope)
    with use_locale(lang):
        table = vm_list_view.Table(
            rows=[], total=0, page=2, q=q, sort=sort, query=request.query_params.multi_items()
        )
        markup = vm_list_view.table_html(table, root_path)
        for role, has_unit in ((Role.UNIT_ADMIN.value, True), (Role.CENTER_OPERATOR.value, False)):
            viewer = vm_list_view.Viewer(
                username="u1", display_name=name, role=role, has_unit=has_unit, csrf=csrf_for(token)
            )
            here = vm_list_view.here_of(request.url.path, request.url.query)
            filled = vm_list_view.page_html(table, viewer, root_path, here)
            user = User(
                username="u1", display_name=name, role=role, unit_id=1 if has_unit else None, password_hash=""
            )
            title = "My VMs" if has_unit else "VMs"
            from vmportal.web.i18n import gettext

            context = {
                **common.base(token, user, gettext(title), "/vms"),
                "request": request,
                "q": q,
                "sort": sort,
                "table": escape(markup) if False else __import__("markupsafe").Markup(markup),
            }
            direct = vm_list_view._environment().get_template("vms.html").render(context)
            assert filled == direct

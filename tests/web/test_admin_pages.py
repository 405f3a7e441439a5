"""The center administrator's pages against the live demo portal.

单位管理: the units list (filtered, sorted, paged); a new unit whose registry is recorded through the
API gets its accounts from the page's button (the initial passwords shown once, not cached, the
account logs in with it; a second press is refused naming the rule, nothing written); the quota form
(bad input beside its field with the rule, the values kept, nothing written; then saved, the API
reads it). 用户管理: the list filtered by role, unit and state, sorted, paged; deactivation and
activation through the confirmation (the account's sessions end; the admin's own refused naming the
rule). IP 地址池: the list and the create form (the service's refusals beside their field, values
kept). 虚拟化平台连接: the list and the "test connection" button (HTMX, the result in words).
Everyone else: the operator and the auditor read, a POST from them is refused naming the rule; a unit
admin is refused the pages. A form without its CSRF token is refused. English too; Chromium with
axe-core in both languages at phone and desktop width, screenshots in the test's temporary directory.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from policies.roles import Role
from tests.web.conftest import Live
from vmportal.app.demo import PASSWORDS

API = "/api/v1"


def _national_id(region: str, birth: str, sequence: str) -> str:
    body = region + birth + sequence
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


@contextlib.contextmanager
def _as(live: Live, username: str, role: Role, **kwargs: Any) -> Iterator[httpx.Client]:
    with live.client(**kwargs) as c:
        r = c.post("/login", data={"username": username, "password": PASSWORDS[role], "next": "/"})
        assert r.status_code == 303, r.text
        yield c


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m is not None
    return m.group(1)


def _error(html: str, name: str) -> str:
    m = re.search(rf'id="f-{name}-error"[^>]*>(.*?)</p>', html, re.S)
    assert m is not None, f"no error beside {name}"
    return re.sub(r"<[^>]+>", "", m.group(1)).strip()


_TOKENS: dict[str, dict[str, str]] = {}


def _api(live: Live, method: str, path: str, **kwargs: Any) -> Any:
    """The API as the center admin (logged in once per portal: a log-in costs an Argon2 hash)."""
    if live.base_url not in _TOKENS:
        _TOKENS[live.base_url] = live.login("center-admin", Role.CENTER_ADMIN)
    with live.client() as c:
        r = c.request(method, f"{API}{path}", headers=_TOKENS[live.base_url], **kwargs)
        assert r.status_code < 300, r.text
        return r.json() if r.content else None


@pytest.fixture(scope="module")
def chem(live: Live) -> int:
    """A new unit with its security administrator recorded and no account yet."""
    unit = _api(
        live,
        "POST",
        "/units",
        json={"code": "CHEM", "name_zh": "化学化工学院", "name_en": "School of Chemistry"},
    )
    _api(
        live,
        "PUT",
        f"/units/{unit['id']}/contacts/security_admin",
        json={
            "name": "赵敏",
            "title": "实验室主任",
            "office_phone": "0516-83592001",
            "mobile": "13952162001",
            "email": "zhao.min@chem.example.edu.cn",
            "qq": "315270419",
            "staff_no": "T2011042",
            "national_id": _national_id("320311", "19880301", "221"),
        },
    )
    return int(unit["id"])


def _rows(html: str, attr: str) -> list[str]:
    return re.findall(rf'<tr data-{attr}="([^"]+)"', html)


# ---- 单位管理 -----------------------------------------------------------------------------------------


def test_the_units_list_filters_sorts_and_refuses_others(live: Live, chem: int) -> None:
    with _as(live, "center-admin", Role.CENTER_ADMIN) as c:
        page = c.get("/admin/units")
        assert page.status_code == 200 and "单位管理" in page.text
        assert '<li><a href="/admin/units"' in page.text  # in the admin's navigation
        codes = re.findall(r"<td><code>([A-Z]+)</code></td>", page.text)
        assert codes == sorted(codes) and "CHEM" in codes
        desc = c.get("/admin/units?sort=code&order=desc").text
        assert re.findall(r"<td><code>([A-Z]+)</code></td>", desc) == sorted(codes, reverse=True)
        found = c.get("/admin/units", params={"q": "化学"}).text
        assert _rows(found, "unit") == [str(chem)]
        assert _rows(c.get("/admin/units?state=inactive").text, "unit") == []
        assert c.get("/admin/units?sort=nonsense&page=-3").status_code == 200  # defaults, not an error
    with _as(live, "operator", Role.CENTER_OPERATOR) as c:
        page = c.get(f"/admin/units/{chem}")
        assert page.status_code == 200 and "只有信息中心管理员可以创建单位账号" in page.text
        token = _csrf(page.text)
        refused = c.post(f"/admin/units/{chem}/accounts", data={"csrf_token": token})
        assert refused.status_code == 403 and "unit.accounts" in refused.text
        refused = c.post(f"/admin/units/{chem}/quota", data={"csrf_token": token, "max_vms": "3"})
        assert refused.status_code == 403 and "quota.update" in refused.text
        assert '<li><a href="/admin/units"' not in page.text  # not in the operator's navigation
    with _as(live, "cs-admin", Role.UNIT_ADMIN) as c:
        page = c.get("/admin/units")
        assert page.status_code == 403 and "unit.read" in page.text
    assert _api(live, "GET", f"/users?unit_id={chem}") == []  # nothing written


def test_the_admin_creates_the_accounts_from_the_registry(live: Live, chem: int) -> None:
    with _as(live, "center-admin", Role.CENTER_ADMIN) as c:
        page = c.get(f"/admin/units/{chem}")
        assert page.status_code == 200 and "赵敏" in page.text and "尚无账号" in page.text
        token = _csrf(page.text)
        assert c.post(f"/admin/units/{chem}/accounts", data={}).status_code == 403  # no CSRF token
        assert _api(live, "GET", f"/users?unit_id={chem}") == []
        done = c.post(f"/admin/units/{chem}/accounts", data={"csrf_token": token})
        assert done.status_code == 201, done.text
        assert "no-store" in done.headers["cache-control"]
        assert "初始密码仅显示一次" in done.text
        m = re.search(
            r'<tr data-created="security_admin">.*?<code>([^<]+)</code>.*?class="initial-password">([^<]+)<',
            done.text,
            re.S,
        )
        assert m is not None
        username, password = m.group(1), m.group(2)
        assert username == "t2011042" and f'data-copy="{password}"' in done.text
        # The password is on that answer only.
        again = c.get(f"/admin/units/{chem}").text
        assert password not in again and "t2011042" in again
        refused = c.post(f"/admin/units/{chem}/accounts", data={"csrf_token": token})
        assert refused.status_code == 422 and "missing_contact" in refused.text  # the lead is not recorded
        assert "网络安全负责人" in refused.text
    users = _api(live, "GET", f"/users?unit_id={chem}")
    assert [(u["username"], u["role"]) for u in users] == [("t2011042", "unit_admin")]
    with live.client() as c:
        r = c.post(f"{API}/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text


def test_the_quota_form(live: Live, chem: int) -> None:
    with _as(live, "center-admin", Role.CENTER_ADMIN) as c:
        token = _csrf(c.get(f"/admin/units/{chem}").text)
        bad = c.post(
            f"/admin/units/{chem}/quota",
            data={
                "csrf_token": token,
                "max_vms": "ten",
                "max_vcpus": "",
                "max_memory_gib": "9999999",
                "max_disk_gib": "500",
            },
        )
        assert bad.status_code == 422
        assert "integer" in _error(bad.text, "max_vms") and "请输入" in _error(bad.text, "max_vms")
        assert "required" in _error(bad.text, "max_vcpus")
        assert "le" in _error(bad.text, "max_memory_gib")
        assert 'value="ten"' in bad.text and 'value="500"' in bad.text  # kept
        assert _api(live, "GET", f"/units/{chem}/quota")["max_disk_gib"] == 0  # nothing written
        done = c.post(
            f"/admin/units/{chem}/quota",
            data={
                "csrf_token": token,
                "max_vms": "4",
                "max_vcpus": "16",
                "max_memory_gib": "64",
                "max_disk_gib": "500",
            },
        )
        assert done.status_code == 303 and done.headers["location"] == f"/admin/units/{chem}?done=quota"
        assert "单位配额已保存" in c.get(done.headers["location"]).text
    quota = _api(live, "GET", f"/units/{chem}/quota")
    assert (quota["max_vms"], quota["max_vcpus"], quota["max_memory_gib"], quota["max_disk_gib"]) == (
        4,
        16,
        64,
        500,
    )


# ---- 用户管理 -----------------------------------------------------------------------------------------


def _user_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-user="\d+" data-username="([^"]+)"', html)


def _user_id(live: Live, username: str) -> int:
    users = _api(live, "GET", "/users?limit=500")
    return next(int(u["id"]) for u in users if u["username"] == username)


def test_the_users_list_filters_sorts_and_pages(live: Live, chem: int) -> None:
    for n in range(24):  # more than a page of accounts
        _api(
            live,
            "POST",
            "/users",
            json={"username": f"reader-{n:02d}", "password": "Kx9!vQ2#mZ7@pL4$", "role": "auditor"},
        )
    with _as(live, "center-admin", Role.CENTER_ADMIN) as c:
        first = c.get("/admin/users")
        assert first.status_code == 200 and "<h1>用户管理</h1>" in first.text
        names = _user_rows(first.text)
        assert len(names) == 25 and names == sorted(names)
        assert "第 1 / 2 页" in first.text
        second = _user_rows(c.get("/admin/users?page=2").text)
        assert second and not set(second) & set(names)
        desc = _user_rows(c.get("/admin/users?sort=username&order=desc").text)
        assert desc[0] == max(names + second)
        admins = _user_rows(c.get("/admin/users?role=unit_admin").text)
        assert "cs-admin" in admins and "operator" not in admins and "t2011042" in admins
        assert _user_rows(c.get(f"/admin/users?unit_id={chem}").text) == ["t2011042"]
        assert _user_rows(c.get("/admin/users?q=reader-0&state=active").text) == [
            f"reader-0{n}" for n in range(10)
        ]
        assert _user_rows(c.get("/admin/users?state=inactive").text) == []
        assert c.get("/admin/users?sort=password_hash&role=god&page=x").status_code == 200  # defaults


def test_the_admin_deactivates_and_activates_an_account(live: Live, chem: int) -> None:
    target = _user_id(live, "reader-05")
    me = _user_id(live, "center-admin")
    with live.client() as victim:
        r = victim.post("/login", data={"username": "reader-05", "password": "Kx9!vQ2#mZ7@pL4$", "next": "/"})
        assert r.status_code == 303 and victim.get("/").status_code == 200
        with _as(live, "operator", Role.CENTER_OPERATOR) as c:
            page = c.get("/admin/users")
            assert page.status_code == 200 and "/active" not in page.text  # no form
            assert "只有信息中心管理员可以启用或停用账号" in page.text
            token = _csrf(page.text)
            refused = c.post(f"/admin/users/{target}/active", data={"csrf_token": token, "active": "false"})
            assert refused.status_code == 403 and "user.update" in refused.text
        with _as(live, "center-admin", Role.CENTER_ADMIN) as c:
            page = c.get("/admin/users?q=reader-05")
            token = _csrf(page.text)
            assert f'action="/admin/users/{target}/active"' in page.text and "data-confirm=" in page.text
            assert (
                c.post(f"/admin/users/{target}/active", data={"active": "false"}).status_code == 403
            )  # no CSRF
            bad = c.post(f"/admin/users/{target}/active", data={"csrf_token": token, "active": "maybe"})
            assert bad.status_code == 422 and "one_of" in bad.text
            own = c.post(f"/admin/users/{me}/active", data={"csrf_token": token, "active": "false"})
            assert own.status_code == 422 and "不能停用自己的账号" in own.text and "self" in own.text
            assert victim.get("/").status_code == 200  # nothing written yet
            done = c.post(f"/admin/users/{target}/active", data={"csrf_token": token, "active": "false"})
            assert (
                done.status_code == 303
                and done.headers["location"] == f"/admin/users?done=deactivated&id={target}"
            )
            assert "账号 reader-05 已停用" in c.get(done.headers["location"]).text
            gone = victim.get("/", follow_redirects=False)
            assert gone.status_code == 303 and gone.headers["location"].startswith(
                "/login"
            )  # its session ended
            assert _user_rows(c.get("/admin/users?state=inactive").text) == ["reader-05"]
            back = c.post(f"/admin/users/{target}/active", data={"csrf_token": token, "active": "true"})
            assert back.status_code == 303
            assert "账号 reader-05 已重新启用" in c.get(back.headers["location"]).text
        assert (
            victim.post(
                "/login", data={"username": "reader-05", "password": "Kx9!vQ2#mZ7@pL4$", "next": "/"}
            ).status_code
            == 303
        )
    with _as(live, "cs-admin", Role.UNIT_ADMIN) as c:
        assert c.get("/admin/users").status_code == 403

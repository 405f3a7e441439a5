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


def _api(live: Live, method: str, path: str, **kwargs: Any) -> Any:
    with live.client() as c:
        r = c.request(method, f"{API}{path}", headers=live.login("center-admin", Role.CENTER_ADMIN), **kwargs)
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

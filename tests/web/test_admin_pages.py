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
axe-core in both languages at phone and desktop width, screenshots at desktop and phone width under .cache/screenshots (tests/web/screens.py).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from policies.roles import Role
from tests.web.conftest import Live
from tests.web.pagekit import as_user, csrf, sign_in
from tests.web.screens import Shots, axe_violations, shots

API = "/api/v1"
__all__ = ["shots"]


def _national_id(region: str, birth: str, sequence: str) -> str:
    body = region + birth + sequence
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


def _error(html: str, name: str, prefix: str = "f-") -> str:
    m = re.search(rf'id="{prefix}{name}-error"[^>]*>(.*?)</p>', html, re.S)
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
    with as_user(live, "center-admin", Role.CENTER_ADMIN) as c:
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
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        page = c.get(f"/admin/units/{chem}")
        assert page.status_code == 200 and "只有信息中心管理员可以创建单位账号" in page.text
        token = csrf(page.text)
        refused = c.post(f"/admin/units/{chem}/accounts", data={"csrf_token": token})
        assert refused.status_code == 403 and "unit.accounts" in refused.text
        refused = c.post(f"/admin/units/{chem}/quota", data={"csrf_token": token, "max_vms": "3"})
        assert refused.status_code == 403 and "quota.update" in refused.text
        assert '<li><a href="/admin/units"' not in page.text  # not in the operator's navigation
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        page = c.get("/admin/units")
        assert page.status_code == 403 and "unit.read" in page.text
    assert _api(live, "GET", f"/users?unit_id={chem}") == []  # nothing written


def test_the_admin_creates_the_accounts_from_the_registry(live: Live, chem: int) -> None:
    with as_user(live, "center-admin", Role.CENTER_ADMIN) as c:
        page = c.get(f"/admin/units/{chem}")
        assert page.status_code == 200 and "赵敏" in page.text and "尚无账号" in page.text
        token = csrf(page.text)
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
    with as_user(live, "center-admin", Role.CENTER_ADMIN) as c:
        token = csrf(c.get(f"/admin/units/{chem}").text)
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
    with as_user(live, "center-admin", Role.CENTER_ADMIN) as c:
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
        with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
            page = c.get("/admin/users")
            assert page.status_code == 200 and "/active" not in page.text  # no form
            assert "只有信息中心管理员可以启用或停用账号" in page.text
            token = csrf(page.text)
            refused = c.post(f"/admin/users/{target}/active", data={"csrf_token": token, "active": "false"})
            assert refused.status_code == 403 and "user.update" in refused.text
        with as_user(live, "center-admin", Role.CENTER_ADMIN) as c:
            page = c.get("/admin/users?q=reader-05")
            token = csrf(page.text)
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
    with as_user(live, "cs-admin", Role.UNIT_ADMIN) as c:
        assert c.get("/admin/users").status_code == 403


# ---- IP 地址池 ------------------------------------------------------------------------------------------


def _pool_names(html: str) -> list[str]:
    return re.findall(r'<tr data-pool="([^"]+)"', html)


def test_the_pools_list_and_the_create_form(live: Live) -> None:
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        page = c.get("/admin/pools")
        assert page.status_code == 200 and {"campus-servers", "campus-dmz"} <= set(_pool_names(page.text))
        assert 'name="cidr"' not in page.text and "只有信息中心管理员可以创建 IP 地址池" in page.text
        refused = c.post("/admin/pools", data={"csrf_token": csrf(page.text), "name": "x"})
        assert refused.status_code == 403 and "pool.create" in refused.text
    with as_user(live, "center-admin", Role.CENTER_ADMIN) as c:
        page = c.get("/admin/pools?sort=cidr")
        assert _pool_names(page.text) == ["campus-servers", "campus-dmz"]  # 10.10.101.0 before 10.10.200.0
        assert _pool_names(c.get("/admin/pools?sort=cidr&order=desc").text) == [
            "campus-dmz",
            "campus-servers",
        ]
        assert _pool_names(c.get("/admin/pools?q=dmz").text) == ["campus-dmz"]
        token = csrf(page.text)
        form = {
            "csrf_token": token,
            "name": "lab-pool",
            "cidr": "10.30.0.0/24",
            "gateway": "10.30.0.1",
            "dns": "10.10.0.53, 10.10.0.54",
            "excluded": "10.30.0.2-10.30.0.9\n10.30.0.200",
            "network": "lab-net",
            "connection_id": "",
        }
        assert (
            c.post("/admin/pools", data={k: v for k, v in form.items() if k != "csrf_token"}).status_code
            == 403
        )
        empty = c.post("/admin/pools", data={**form, "name": "", "cidr": ""})
        assert empty.status_code == 422
        assert "required" in _error(empty.text, "name") and "此项为必填项" in _error(empty.text, "name")
        assert "required" in _error(empty.text, "cidr")
        assert 'value="10.30.0.1"' in empty.text and "10.30.0.200" in empty.text  # kept
        host_bits = c.post("/admin/pools", data={**form, "cidr": "10.30.0.5/24"})
        assert host_bits.status_code == 422 and "cidr" in host_bits.text
        assert _error(host_bits.text, "cidr")
        outside = c.post("/admin/pools", data={**form, "gateway": "10.31.0.1"})
        assert outside.status_code == 422 and _error(outside.text, "gateway")
        bad_range = c.post("/admin/pools", data={**form, "excluded": "10.30.0.2-10.40.0.9"})
        assert bad_range.status_code == 422 and _error(bad_range.text, "excluded")
        taken = c.post("/admin/pools", data={**form, "name": "campus-dmz"})
        assert taken.status_code == 409 and "地址池“campus-dmz”已存在" in _error(taken.text, "name")
        too_many = c.post("/admin/pools", data={**form, "dns": "1.1.1.1 2.2.2.2 3.3.3.3 4.4.4.4 5.5.5.5"})
        assert too_many.status_code == 422 and "max_items" in _error(too_many.text, "dns")
        assert "lab-pool" not in [p["name"] for p in _api(live, "GET", "/pools")]  # nothing written
        done = c.post("/admin/pools", data=form)
        assert done.status_code == 303, done.text
        assert "IP 地址池 lab-pool 已创建" in c.get(done.headers["location"]).text
    pool = next(p for p in _api(live, "GET", "/pools") if p["name"] == "lab-pool")
    assert pool["dns"] == ["10.10.0.53", "10.10.0.54"] and pool["network"] == "lab-net"
    assert (
        pool["counts"]["size"] - pool["counts"]["free"] == 0 and pool["counts"]["size"] == 254 - 1 - 9
    )  # less the gateway and the exclusions


# ---- 虚拟化平台连接 -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unreachable(live: Live) -> int:
    """A vSphere connection to a loopback port nothing listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = _api(
        live,
        "POST",
        "/connections",
        json={
            "kind": "vsphere",
            "name": "old-vcenter",
            "url": f"https://127.0.0.1:{port}",
            "username": "portal@vsphere.local",
            "secret": "not-used-here",
            "verify_tls": False,
            "active": False,
        },
    )
    return int(conn["id"])


def test_the_connections_list_and_the_test_button(live: Live, unreachable: int) -> None:
    conns = {c["name"]: int(c["id"]) for c in _api(live, "GET", "/connections")}
    sim = next(i for name, i in conns.items() if name != "old-vcenter")
    with as_user(live, "auditor", Role.AUDITOR) as c:
        page = c.get("/admin/connections")
        assert page.status_code == 200 and "old-vcenter" in page.text and "/test" not in page.text
        refused = c.post(f"/admin/connections/{sim}/test", data={"csrf_token": csrf(page.text)})
        assert refused.status_code == 403 and "connection.test" in refused.text
    with as_user(live, "center-admin", Role.CENTER_ADMIN) as c:
        page = c.get("/admin/connections?sort=name")
        assert page.status_code == 200 and 'hx-post="/admin/connections/' in page.text
        assert "尚未测试" in page.text or "上次测试" in page.text
        token = csrf(page.text)
        assert c.post(f"/admin/connections/{sim}/test", headers={"HX-Request": "true"}).status_code == 403
        ok = c.post(f"/admin/connections/{sim}/test", headers={"HX-Request": "true", "X-CSRF-Token": token})
        assert ok.status_code == 200 and f'id="check-{sim}" data-ok="yes"' in ok.text
        assert "已连接" in ok.text and "<html" not in ok.text  # the cell only
        failed = c.post(f"/admin/connections/{unreachable}/test", data={"csrf_token": token})
        assert failed.status_code == 200 and "<html" in failed.text  # without htmx: the page
        assert (
            "old-vcenter：连接失败" in failed.text and f'id="check-{unreachable}" data-ok="no"' in failed.text
        )
        assert c.post("/admin/connections/999999/test", data={"csrf_token": token}).status_code == 404
        assert re.findall(r'<tr data-connection="(\d+)"', c.get("/admin/connections?q=old").text) == [
            str(unreachable)
        ]
    checked = {c["id"]: c for c in _api(live, "GET", "/connections")}
    assert checked[sim]["last_check_ok"] is True and checked[unreachable]["last_check_ok"] is False
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:  # the API's rule: the operator tests too
        token = csrf(c.get("/admin/connections").text)
        again = c.post(
            f"/admin/connections/{sim}/test", headers={"HX-Request": "true", "X-CSRF-Token": token}
        )
        assert again.status_code == 200 and 'data-ok="yes"' in again.text


# ---- 告警来源 -------------------------------------------------------------------------------------------


def test_the_alert_sources_and_the_secret_shown_once(live: Live) -> None:
    with as_user(live, "operator", Role.CENTER_OPERATOR) as c:
        page = c.get("/admin/alert-sources")
        assert page.status_code == 200 and 'name="allowed_cidrs"' not in page.text
        refused = c.post(
            "/admin/alert-sources", data={"csrf_token": csrf(page.text), "name": "x", "kind": "zeek"}
        )
        assert refused.status_code == 403 and "alert_source.create" in refused.text
    with as_user(live, "center-admin", Role.CENTER_ADMIN) as c:
        token = csrf(c.get("/admin/alert-sources").text)
        form = {
            "csrf_token": token,
            "name": "campus-ids",
            "kind": "suricata",
            "auth": "",
            "allowed_cidrs": "127.0.0.1/32\n10.0.5.0/24",
            "description": "校园网出口 IDS",
        }
        assert (
            c.post(
                "/admin/alert-sources", data={k: v for k, v in form.items() if k != "csrf_token"}
            ).status_code
            == 403
        )
        bad = c.post("/admin/alert-sources", data={**form, "name": "Campus IDS", "kind": "snort"})
        assert bad.status_code == 422 and "one_of" in _error(bad.text, "kind")
        assert 'value="Campus IDS"' in bad.text and "10.0.5.0/24" in bad.text  # kept
        pattern = c.post("/admin/alert-sources", data={**form, "name": "Campus IDS"})
        assert pattern.status_code == 422 and "pattern" in _error(pattern.text, "name")
        assert "只能使用小写字母" in _error(pattern.text, "name")
        cidr = c.post("/admin/alert-sources", data={**form, "allowed_cidrs": "10.0.5.0/33"})
        assert cidr.status_code == 422 and "cidr" in _error(cidr.text, "allowed_cidrs")
        assert "campus-ids" not in [s["name"] for s in _api(live, "GET", "/alert-sources")]  # nothing written
        done = c.post("/admin/alert-sources", data=form)
        assert done.status_code == 201 and "no-store" in done.headers["cache-control"]
        assert "仅显示一次" in done.text
        m = re.search(r'data-issued="token">([^<]+)<', done.text)
        assert m is not None and 'data-issued="secret"' not in done.text  # suricata: a token only
        bearer = m.group(1)
        assert f'data-copy="{bearer}"' in done.text and "POST /api/v1/alerts/campus-ids" in done.text
        listed = c.get("/admin/alert-sources?kind=suricata")
        assert _rows(listed.text, "source") == ["campus-ids"] and bearer not in listed.text  # never again
        taken = c.post("/admin/alert-sources", data=form)
        assert taken.status_code == 409 and "已存在名为“campus-ids”的告警源" in _error(taken.text, "name")
    with live.client() as c:
        wrong = c.post(f"{API}/alerts/campus-ids", content=b"{}", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = c.post(
            f"{API}/alerts/campus-ids", content=b"{}", headers={"Authorization": f"Bearer {bearer}"}
        )
        assert right.status_code not in (401, 403), right.text


# ---- 处置策略 -------------------------------------------------------------------------------------------


def _policy_form(token: str, rules: list[dict[str, str]]) -> dict[str, str]:
    data = {"csrf_token": token}
    for i, rule in enumerate(rules):
        data.update({f"rules-{i}-{k}": v for k, v in rule.items()})
    return data


def test_the_containment_policy_table(live: Live) -> None:
    before = _api(live, "GET", "/security/containment-policy")
    rules = [dict(r) for r in before["rules"]]
    assert before["is_default"] and rules
    with as_user(live, "auditor", Role.AUDITOR) as c:
        page = c.get("/admin/containment-policy")
        assert (
            page.status_code == 200
            and "<select" not in page.text
            and "只有信息中心管理员可以修改处置策略" in page.text
        )
        refused = c.post("/admin/containment-policy", data=_policy_form(csrf(page.text), rules))
        assert refused.status_code == 403 and "containment_policy.update" in refused.text
    with as_user(live, "center-admin", Role.CENTER_ADMIN) as c:
        page = c.get("/admin/containment-policy")
        assert (
            page.status_code == 200 and len(re.findall(r'<tr data-rule="\d+"', page.text)) == len(rules) + 3
        )
        token = csrf(page.text)
        weak = {"category": "virus", "min_severity": "high", "confidence": "low", "action": "isolate_network"}
        refused = c.post("/admin/containment-policy", data=_policy_form(token, [*rules, weak]))
        assert refused.status_code == 422
        n = len(rules)
        message = _error(refused.text, f"rules-{n}-action", prefix="")
        assert "low_confidence_notify_only" in message and "低置信度的规则只能“仅通知”" in message
        assert re.search(
            rf'id="rules-{n}-action"[^>]*>.*?<option value="isolate_network" selected>', refused.text, re.S
        )
        half = c.post(
            "/admin/containment-policy",
            data=_policy_form(
                token, [*rules, {"category": "virus", "min_severity": "", "confidence": "", "action": ""}]
            ),
        )
        assert half.status_code == 422 and "required" in _error(
            half.text, f"rules-{n}-min_severity", prefix=""
        )
        twice = c.post("/admin/containment-policy", data=_policy_form(token, [*rules, rules[0]]))
        assert twice.status_code == 422 and "duplicate" in _error(
            twice.text, f"rules-{n}-category", prefix=""
        )
        assert _api(live, "GET", "/security/containment-policy")["is_default"]  # nothing written
        new = {
            "category": "dark_link",
            "min_severity": "medium",
            "confidence": "low",
            "action": "notify_only",
        }
        if new in rules:
            new = {**new, "min_severity": "low"}
        empty_row = {"category": "", "min_severity": "", "confidence": "", "action": ""}
        done = c.post("/admin/containment-policy", data=_policy_form(token, [*rules, empty_row, new]))
        assert done.status_code == 303 and done.headers["location"] == "/admin/containment-policy?done=saved"
        assert "处置策略已保存" in c.get(done.headers["location"]).text
    after = _api(live, "GET", "/security/containment-policy")
    assert not after["is_default"] and after["rules"] == [*rules, new]  # the empty row dropped


# ---- in Chromium ---------------------------------------------------------------------------------------


def test_the_pages_in_english(live: Live, chem: int) -> None:
    with as_user(live, "center-admin", Role.CENTER_ADMIN, headers={"Accept-Language": "en"}) as c:
        page = c.get(f"/admin/units/{chem}")
        assert page.status_code == 200 and "Accounts from the contact registry" in page.text
        bad = c.post(f"/admin/units/{chem}/quota", data={"csrf_token": csrf(page.text), "max_vms": "-1"})
        assert bad.status_code == 422 and "Enter a whole number, 0 or more. (rule integer)" in _error(
            bad.text, "max_vms"
        )
        pools = c.post(
            "/admin/pools", data={"csrf_token": csrf(page.text), "name": "", "cidr": "x", "gateway": "y"}
        )
        assert pools.status_code == 422 and "This field is required. (rule required)" in _error(
            pools.text, "name"
        )
        assert "<h1>Users</h1>" in c.get("/admin/users").text
        assert "Hypervisor connections" in c.get("/admin/connections").text
    with as_user(live, "cs-admin", Role.UNIT_ADMIN, headers={"Accept-Language": "en"}) as c:
        refused = c.get("/admin/pools")
        assert (
            refused.status_code == 403
            and "Rule pool.read: only the center" in refused.text
            and "see the IP pools" in refused.text
        )


def _login(page: Page, live: Live, next_url: str) -> None:
    sign_in(page, live.base_url, "center-admin", Role.CENTER_ADMIN, next_url)


def test_the_admin_pages_in_chromium(
    live: Live, chem: int, unreachable: int, browser: Browser, vendored: None, shots: Shots
) -> None:
    _api(
        live,
        "PUT",
        f"/units/{chem}/contacts/security_lead",
        json={
            "name": "钱学文",
            "title": "副院长",
            "office_phone": "0516-83592000",
            "mobile": "13805162000",
            "email": "qian.xuewen@chem.example.edu.cn",
        },
    )
    sim = next(int(c["id"]) for c in _api(live, "GET", "/connections") if c["name"] != "old-vcenter")
    paths = (
        "/admin/units",
        f"/admin/units/{chem}",
        "/admin/users",
        "/admin/pools",
        "/admin/connections",
        "/admin/alert-sources",
        "/admin/containment-policy",
    )
    for locale, width in (("en-US", 375), ("en-US", 1280), ("zh-CN", 375), ("zh-CN", 1280)):
        context = browser.new_context(
            locale=locale, viewport={"width": width, "height": 900}, bypass_csp=True
        )
        page = context.new_page()
        try:
            _login(page, live, "/admin/units")
            for path in paths:
                page.goto(f"{live.base_url}{path}")
                name = path.strip("/").replace("/", "-")
                shots.take(page, name)
                assert axe_violations(page) == [], path
            if (locale, width) != ("zh-CN", 1280):
                continue
            # The test button: the result in words in place of the last one (htmx).
            page.goto(f"{live.base_url}/admin/connections")
            page.locator(f"tr[data-connection='{sim}'] button[data-action=test]").click()
            expect(page.locator(f"#check-{sim}")).to_have_attribute("data-ok", "yes")
            expect(page.locator(f"#check-{sim}")).to_contain_text("已连接")
            page.locator(f"tr[data-connection='{unreachable}'] button[data-action=test]").click()
            expect(page.locator(f"#check-{unreachable}")).to_contain_text("连接失败")
            assert axe_violations(page) == []
            # Deactivation through the portal's confirmation dialog.
            page.goto(f"{live.base_url}/admin/users?q=reader-07")
            page.locator("tr[data-username='reader-07'] button[data-action=deactivate]").click()
            dialog = page.locator("#confirm-dialog")
            expect(dialog).to_be_visible()
            expect(dialog).to_contain_text("停用账号 reader-07")
            dialog.locator("[data-confirm-ok]").click()
            expect(page.locator(".flash-success")).to_contain_text("账号 reader-07 已停用")
            # The lead's account from the registry; its password shown once, with a copy button.
            page.goto(f"{live.base_url}/admin/units/{chem}")
            page.locator("button[data-action=create-accounts]").click()
            expect(dialog).to_be_visible()
            dialog.locator("[data-confirm-ok]").click()
            created = page.locator("tr[data-created='security_lead']")
            expect(created).to_be_visible()
            expect(page.locator(".secret-once")).to_contain_text("初始密码仅显示一次")
            expect(created.locator("button[data-copy]")).to_have_count(1)
            shots.take(page, "accounts-created")
            assert axe_violations(page) == []
            # The pool form's errors beside their fields.
            page.goto(f"{live.base_url}/admin/pools")
            page.locator("#f-name").fill("lab-2")
            page.locator("#f-cidr").fill("10.40.0.0/24")
            page.locator("#f-gateway").fill("10.41.0.1")
            page.get_by_role("button", name="创建 IP 地址池").click()
            expect(page.locator("#f-gateway-error")).to_be_visible()
            expect(page.locator("#f-name")).to_have_value("lab-2")
            shots.take(page, "pool-error")
            assert axe_violations(page) == []
        finally:
            context.close()
    users = _api(live, "GET", f"/users?unit_id={chem}")
    assert sorted(u["role"] for u in users) == ["unit_admin", "unit_lead"]
    assert (
        next(u for u in _api(live, "GET", "/users?limit=500") if u["username"] == "reader-07")["active"]
        is False
    )

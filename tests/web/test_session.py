"""The pages' front door as a browser meets it: / sends to the login page (not a JSON 404), a
log-in sets an HttpOnly SameSite=Lax cookie and returns to the page asked for, a wrong password
is refused in Chinese on the page, logout needs the CSRF token and ends the session on the server."""

from __future__ import annotations

import re

from policies.roles import Role
from tests.web.conftest import Live
from vmportal.app.demo import PASSWORDS


def test_root_is_the_login_page(live: Live) -> None:
    with live.client() as c:
        r = c.get("/account")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/account"
        page = c.get(r.headers["location"])
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "用户名" in page.text and 'name="password"' in page.text


def test_login_logout(live: Live) -> None:
    with live.client() as c:
        bad = c.post("/login", data={"username": "operator", "password": "nope", "next": "/"})
        assert bad.status_code == 401 and "用户名或密码错误" in bad.text
        ok = c.post(
            "/login",
            data={"username": "operator", "password": PASSWORDS[Role.CENTER_OPERATOR], "next": "/account"},
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/account"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        page = c.get("/account")
        assert page.status_code == 200 and "operator" in page.text
        home = c.get("/")
        assert home.status_code == 200
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', home.text)
        assert csrf is not None
        refused = c.post("/logout", data={})
        assert refused.status_code == 403
        assert c.get("/account").status_code == 200  # still logged in
        out = c.post("/logout", data={"csrf_token": csrf.group(1)})
        assert out.status_code == 303
        token = ok.cookies.get("vmportal_session")
        assert token
        c.cookies.set("vmportal_session", token)  # the old cookie no longer opens a page
        assert c.get("/account").status_code == 303


def test_vm_list_page(live: Live) -> None:
    from vmportal.app.demo import logins

    admin = next(d for d in logins() if d.role == Role.UNIT_ADMIN)
    with live.client() as c:
        c.post("/login", data={"username": admin.username, "password": admin.password, "next": "/"})
        page = c.get("/vms", params={"sort": "-name"})
        assert page.status_code == 200 and "我的虚拟机" in page.text and 'hx-trigger="every 5s"' in page.text
        table = c.get("/vms", headers={"HX-Request": "true"})
        assert table.text.lstrip().startswith('<div id="vm-table"')

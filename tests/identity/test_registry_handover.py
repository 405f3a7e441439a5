"""Accounts follow the contact registry, through the real CAS server (issue 13 point 4, the walk "a
unit's admin replaced in the registry loses access and the new one gains it"): the unit's
网络安全管理员 signs on through CAS; the center records another person in the registry; the old
person's sessions are gone at once and their next CAS sign-on reads the not-registered page; the new
person signs on through CAS and lands in the unit. The whole change is one transaction with its
audit rows."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import select

from tests.api.test_units import ADMIN_CONTACT
from tests.factories import PASSWORD, Factory
from tests.identity.conftest import Portal
from tests.identity.test_cas_login import COOKIE, _unit_admin_of
from tests.support.campus_people import staff
from tests.support.cas_server import CasServer
from vmportal.audit.models import AuditEntry
from vmportal.identity.models import AuthToken, User
from vmportal.kit import db

pytestmark = pytest.mark.xdist_group("identity-servers")

NEWCOMER = "qianjiu"
NEWCOMER_PASSWORD = "Campus-Qian-2026!"
NEWCOMER_STAFF_NO = "20210901"


@pytest.fixture
def portal(start_portal: Callable[..., Portal], cas: CasServer) -> Portal:
    cas.add_user(
        NEWCOMER,
        NEWCOMER_PASSWORD,
        {
            "employeeNumber": NEWCOMER_STAFF_NO,
            "cn": "钱九",
            "displayName": "钱九",
            "mail": "qianjiu@example.edu.cn",
        },
    )
    return start_portal(login_methods=["cas", "local"], cas_server_url=cas.url)


def _sign_on(c: httpx.Client, cas: CasServer, uid: str, password: str) -> httpx.Response:
    start = c.get("/auth/cas/login", params={"next": "/account"})
    service = parse_qs(urlsplit(start.headers["location"]).query)["service"][0]
    login = cas.login(uid, password, service=service)
    return c.get(login.redirect)


def _me(c: httpx.Client, token: str) -> httpx.Response:
    return c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


def test_a_replaced_unit_admin_loses_access_and_the_new_one_gains_it_through_cas(
    portal: Portal, cas: CasServer, factory: Factory
) -> None:
    unit, old = _unit_admin_of(factory, "zhaoliu")
    center = factory.user("center_admin", username="nic.chief")

    # The current admin is signed on in two browsers.
    with portal.client() as first, portal.client() as second:
        sessions = []
        for browser in (first, second):
            back = _sign_on(browser, cas, "zhaoliu", staff("zhaoliu").password)
            assert back.status_code == 303 and back.headers["location"] == "/account", back.text
            assert browser.get("/account").status_code == 200
            sessions.append(back.cookies[COOKIE])
        assert _me(first, sessions[0]).json()["unit_id"] == unit.id

        # The center records the unit's new 网络安全管理员 (through the API, as the unit page does).
        with portal.client() as desk:
            token = desk.post(
                "/api/v1/auth/login", json={"username": center.username, "password": PASSWORD}
            ).json()["access_token"]
            newcomer = {
                **ADMIN_CONTACT,
                "name": "钱九",
                "staff_no": NEWCOMER_STAFF_NO,
                "email": "qianjiu@example.edu.cn",
            }
            put = desk.put(
                f"/api/v1/units/{unit.id}/contacts/security_admin",
                json=newcomer,
                headers={"Authorization": f"Bearer {token}", "X-Request-ID": "handover-walk-1"},
            )
            assert put.status_code == 200, put.text

        # Every session of the old admin is gone at once: the pages send them to the log-in, the
        # API refuses their tokens.
        for browser, session_token in zip((first, second), sessions, strict=True):
            page = browser.get("/account")
            assert page.status_code == 303 and page.headers["location"].startswith("/login")
            assert _me(browser, session_token).status_code == 401

    # The old person's campus sign-on still succeeds at CAS; the portal reads them as unregistered.
    with portal.client() as c:
        page = _sign_on(c, cas, "zhaoliu", staff("zhaoliu").password)
        assert page.status_code == 403
        assert "尚未在本系统登记" in page.text and "网络安全联络通讯录" in page.text
        assert COOKIE not in page.cookies

    # The new person signs on through CAS and lands in the unit, as its unit_admin.
    with portal.client() as c:
        back = _sign_on(c, cas, NEWCOMER, NEWCOMER_PASSWORD)
        assert back.status_code == 303 and back.headers["location"] == "/account", back.text
        assert c.get("/account").status_code == 200
        me = _me(c, back.cookies[COOKIE]).json()
        assert (me["role"], me["unit_id"], me["display_name"]) == ("unit_admin", unit.id, "钱九")
        units = c.get("/api/v1/units", headers={"Authorization": f"Bearer {back.cookies[COOKIE]}"})
        assert [u["id"] for u in units.json()] == [unit.id]

    with db.transaction() as s:
        retired = s.get(User, old.id)
        assert retired is not None and retired.active is False
        tokens = s.exec(select(AuthToken).where(AuthToken.user_id == old.id)).all()
        assert len(tokens) == 2 and all(t.revoked_at is not None for t in tokens)
        new = s.exec(select(User).where(User.username == me["username"])).one()
        assert new.contact_id == old.contact_id and new.active
        # One change: the registry row, the retirement, the new account and the hand-over, all
        # written by the same request (one transaction) and by the center admin who made it.
        rows = s.exec(select(AuditEntry).where(AuditEntry.request_id == "handover-walk-1")).all()
        assert [r.action for r in rows] == [
            "contact.update",
            "user.deactivate",
            "user.create",
            "account.replace",
        ]
        assert {r.actor for r in rows} == {center.username}
        assert "2 token(s) revoked" in rows[1].detail
        assert rows[3].before == {"user_id": old.id, "username": old.username}
        assert rows[3].after == {"user_id": new.id, "username": new.username}

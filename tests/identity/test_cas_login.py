"""Campus single sign-on through the real CAS 3.0 server (django-cas-server): a unit admin logs in
with their campus account and sees their unit, an unknown person gets the bilingual page and no
account, a ticket is good once, failures answer a page (never a 5xx), and the CAS server's single
log-out ends the portal session."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import select

from tests.factories import Factory
from tests.identity.conftest import Portal
from tests.support.campus_people import staff
from tests.support.cas_server import CasServer
from tests.support.slapd import Directory
from vmportal.audit.models import AuditEntry
from vmportal.identity.models import AuthToken, CasSession, User
from vmportal.kit import db
from vmportal.unit.models import Contact, Unit

pytestmark = pytest.mark.xdist_group("identity-servers")

COOKIE = "vmportal_session"


@pytest.fixture
def portal(start_portal: Callable[..., Portal], cas: CasServer) -> Portal:
    return start_portal(
        login_methods=["cas", "local"],
        cas_server_url=cas.url,
        cas_center_users={"lisi": "center_operator"},
    )


def _unit_admin_of(factory: Factory, uid: str) -> tuple[Unit, User]:
    """A unit whose registry names the campus person ``uid`` (their staff number) as its security
    admin, and the unit_admin account made from that row."""
    unit = factory.unit()
    with db.transaction() as s:
        contact = s.exec(
            select(Contact).where(Contact.unit_id == unit.id, Contact.role == "security_admin")
        ).one()
        contact.staff_no = staff(uid).employee_number
        s.add(contact)
        user = User(
            username=f"ua-{uid}",
            password_hash="!",
            role="unit_admin",
            unit_id=unit.id,
            contact_id=contact.id,
            display_name=staff(uid).cn,
        )
        s.add(user)
        s.flush()
        s.refresh(user)
    return unit, user


def _cas_round_trip(c: httpx.Client, cas: CasServer, uid: str, next_path: str = "/") -> httpx.Response:
    """What a browser does: the portal's redirect to CAS, the login form, the way back with a ticket."""
    start = c.get("/auth/cas/login", params={"next": next_path})
    assert start.status_code == 303
    location = start.headers["location"]
    assert location.startswith(cas.login_url + "?")
    service = parse_qs(urlsplit(location).query)["service"][0]
    login = cas.login(uid, staff(uid).password, service=service)
    assert login.redirect.startswith(service)
    return c.get(login.redirect)


def test_a_unit_admin_logs_in_through_cas_and_sees_their_unit(
    portal: Portal, cas: CasServer, factory: Factory
) -> None:
    unit, account = _unit_admin_of(factory, "zhaoliu")
    other = factory.unit()
    with portal.client() as c:
        back = _cas_round_trip(c, cas, "zhaoliu", next_path="/account")
        assert back.status_code == 303, back.text
        assert back.headers["location"] == "/account"
        cookie = back.cookies.get(COOKIE)
        assert cookie
        set_cookie = back.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=lax" in set_cookie
        page = c.get("/account")
        assert page.status_code == 200 and account.username in page.text
        # The same token rules as a password log-in: the session is a bearer token of that account.
        api = {"Authorization": f"Bearer {cookie}"}
        me = c.get("/api/v1/auth/me", headers=api).json()
        assert me["username"] == account.username and me["unit_id"] == unit.id
        units = c.get("/api/v1/units", headers=api)
        assert units.status_code == 200
        assert [u["id"] for u in units.json()] == [unit.id]
        assert c.get(f"/api/v1/units/{other.id}", headers=api).status_code == 404
    with db.transaction() as s:
        login_rows = s.exec(
            select(AuditEntry).where(AuditEntry.action == "login", AuditEntry.target_id == str(account.id))
        ).all()
        assert [r.detail for r in login_rows] == ["via cas"]
        assert s.exec(select(CasSession)).one().cas_user == "zhaoliu"


def test_an_unknown_cas_user_gets_the_page_and_no_account(portal: Portal, cas: CasServer) -> None:
    with db.transaction() as s:
        before = len(s.exec(select(User)).all())
    with portal.client() as c:
        page = _cas_round_trip(c, cas, "wangwu")  # a campus person no unit's registry names
        assert page.status_code == 403
        assert "text/html" in page.headers["content-type"]
        assert "网络安全联络通讯录" in page.text
        assert "尚未在本系统登记" in page.text
        assert "not registered" in page.text.lower()  # and in English, on the same page
        assert staff("wangwu").employee_number in page.text
        assert COOKIE not in page.cookies
    with db.transaction() as s:
        assert len(s.exec(select(User)).all()) == before  # never an account made on the fly
        refused = s.exec(select(AuditEntry).where(AuditEntry.action == "login.failed")).all()
        assert [(r.actor, r.result) for r in refused] == [("cas:wangwu", "denied")]


def test_a_center_user_of_the_cas_list_gets_a_center_account(portal: Portal, cas: CasServer) -> None:
    with portal.client() as c:
        back = _cas_round_trip(c, cas, "lisi")
        assert back.status_code == 303, back.text
        me = c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {back.cookies[COOKIE]}"}).json()
    assert me["username"] == "lisi" and me["role"] == "center_operator" and me["unit_id"] is None
    # The account has no local password: the password log-in refuses it like a wrong password.
    with portal.client() as c:
        r = c.post("/api/v1/auth/login", json={"username": "lisi", "password": staff("lisi").password})
        assert r.status_code == 401


def test_a_replayed_ticket_is_refused(portal: Portal, cas: CasServer, factory: Factory) -> None:
    _unit_admin_of(factory, "zhaoliu")
    with portal.client() as c:
        start = c.get("/auth/cas/login")
        service = parse_qs(urlsplit(start.headers["location"]).query)["service"][0]
        login = cas.login("zhaoliu", staff("zhaoliu").password, service=service)
        first = c.get(login.redirect)
        assert first.status_code == 303
    with portal.client() as attacker:  # the same ticket, from another browser
        again = attacker.get(login.redirect)
        assert again.status_code == 401
        assert "已被使用" in again.text
        assert COOKIE not in again.cookies
    with db.transaction() as s:
        assert len(s.exec(select(AuthToken)).all()) == 1


def test_a_ticket_the_portal_never_saw_is_an_invalid_ticket(portal: Portal, cas: CasServer) -> None:
    with portal.client() as c:
        # Used up at the CAS server by someone else first (CAS 3.0: validation consumes a ticket).
        start = c.get("/auth/cas/login")
        service = parse_qs(urlsplit(start.headers["location"]).query)["service"][0]
        login = cas.login("zhaoliu", staff("zhaoliu").password, service=service)
        httpx.get(
            cas.url + "p3/serviceValidate",
            params={"ticket": login.ticket, "service": service},
            trust_env=False,
        )
        r = c.get(login.redirect)
        assert r.status_code == 401 and "登录票据无效" in r.text
        assert c.get("/auth/cas/callback", params={"ticket": "ST-made-up"}).status_code == 401
        assert c.get("/auth/cas/callback", params={"ticket": "<script>"}).status_code == 401
        assert c.get("/auth/cas/callback").status_code == 401


def test_a_ticket_for_another_service_is_an_invalid_service(portal: Portal, cas: CasServer) -> None:
    login = cas.login("zhaoliu", staff("zhaoliu").password, service=portal.url + "/elsewhere")
    with portal.client() as c:
        r = c.get("/auth/cas/callback", params={"ticket": login.ticket})
        assert r.status_code == 401 and "不是签发给本系统" in r.text


def test_the_service_url_is_fixed_and_next_only_takes_local_paths(portal: Portal, cas: CasServer) -> None:
    with portal.client() as c:
        for asked in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
            r = c.get("/auth/cas/login", params={"next": asked}, headers={"Host": "evil.example"})
            service = parse_qs(urlsplit(r.headers["location"]).query)["service"][0]
            assert service == portal.url + "/auth/cas/callback"
            assert r.cookies.get("vmportal_cas_next") in ("/", '"/"')


@pytest.fixture
def silent_cas() -> Iterator[str]:
    """A CAS server URL whose server accepts the connection and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/cas/"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_cas_server_that_does_not_answer_gets_a_page_not_a_5xx_crash(
    start_portal: Callable[..., Portal], silent_cas: str
) -> None:
    portal = start_portal(login_methods=["cas", "local"], cas_server_url=silent_cas, cas_timeout=0.5)
    with portal.client() as c:
        r = c.get("/auth/cas/callback", params={"ticket": "ST-1-abcdef"})
        assert r.status_code == 503
        assert "text/html" in r.headers["content-type"]
        assert "统一身份认证服务器暂时无法验证" in r.text
        assert 'href="/login"' in r.text  # another way in is offered


def test_single_log_out_ends_the_portal_session(portal: Portal, cas: CasServer, factory: Factory) -> None:
    _unit_admin_of(factory, "zhaoliu")
    with portal.client() as c:
        start = c.get("/auth/cas/login")
        service = parse_qs(urlsplit(start.headers["location"]).query)["service"][0]
        login = cas.login("zhaoliu", staff("zhaoliu").password, service=service)
        assert c.get(login.redirect).status_code == 303
        assert c.get("/account").status_code == 200
        cas.logout(login.session)  # the CAS server posts its LogoutRequest to the service URL
        r = c.get("/account")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    with db.transaction() as s:
        token = s.exec(select(AuthToken)).one()
        assert token.revoked_at is not None
        assert s.exec(
            select(AuditEntry).where(AuditEntry.action == "logout", AuditEntry.detail == "cas single log-out")
        ).one()


def test_a_forged_logout_request_ends_nothing(portal: Portal, cas: CasServer, factory: Factory) -> None:
    _unit_admin_of(factory, "zhaoliu")
    with portal.client() as c:
        assert _cas_round_trip(c, cas, "zhaoliu").status_code == 303
        for body in ("<not-xml", "<!DOCTYPE x [<!ENTITY e 'x'>]><x>&e;</x>", "", "A" * 20000):
            assert (
                httpx.post(
                    portal.url + "/auth/cas/callback", data={"logoutRequest": body}, trust_env=False
                ).status_code
                == 200
            )
        forged = (
            '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="x" Version="2.0">'
            "<samlp:SessionIndex>ST-guessed-1</samlp:SessionIndex></samlp:LogoutRequest>"
        )
        httpx.post(portal.url + "/auth/cas/callback", data={"logoutRequest": forged}, trust_env=False)
        assert c.get("/account").status_code == 200


def test_a_new_session_id_at_every_cas_log_in(portal: Portal, cas: CasServer, factory: Factory) -> None:
    _unit_admin_of(factory, "zhaoliu")
    with portal.client() as c:
        c.cookies.set(COOKIE, "planted-by-an-attacker")
        first = _cas_round_trip(c, cas, "zhaoliu")
        one = first.cookies[COOKIE]
        assert one != "planted-by-an-attacker"
        second = _cas_round_trip(c, cas, "zhaoliu")
        two = second.cookies[COOKIE]
        assert two != one
    with portal.client() as old:
        old.cookies.set(COOKIE, one)
        assert old.get("/account").status_code == 303  # the earlier session was ended
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", two)


def test_center_staff_in_an_ldap_group_sign_on_through_cas(
    start_portal: Callable[..., Portal], cas: CasServer, ldap_directory: Directory
) -> None:
    from tests.identity.conftest import ldap_settings
    from vmportal.identity import ldap

    portal = start_portal(
        login_methods=["cas"], cas_server_url=cas.url, **ldap_settings(ldap_directory.server)
    )
    with portal.client() as c:
        back = _cas_round_trip(c, cas, "zhangsan")  # in vmportal-admins; on no CAS list
        assert back.status_code == 303, back.text
        me = c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {back.cookies[COOKIE]}"}).json()
        assert me["username"] == "zhangsan" and me["role"] == "center_admin"
        ldap_directory.disable("zhangsan")
        with db.transaction() as s:
            assert ldap.sync(s).retired == ["zhangsan"]
        assert c.get("/account").status_code == 303  # out, sessions revoked
        again = _cas_round_trip(c, cas, "zhangsan")  # CAS still lets them in; the portal does not
        assert again.status_code == 403 and COOKIE not in again.cookies

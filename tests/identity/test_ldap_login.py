"""Center staff log in with their directory password (the real slapd, StartTLS or LDAPS with the
certificate verified): the directory group decides the role, a person in no portal group or with
a wrong password is refused, and the sync retires the account of a person disabled or removed in
the directory (sessions and tokens revoked)."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import select

from tests.identity.conftest import Portal, ldap_settings
from tests.support.campus_people import OPERATORS, group_dn, staff
from tests.support.slapd import Directory
from tests.support.throwaway_ca import write_unrelated_ca
from vmportal.audit.models import AuditEntry
from vmportal.identity import ldap
from vmportal.identity.models import AuthToken, User
from vmportal.kit import db

pytestmark = [
    pytest.mark.xdist_group("identity-servers"),
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]

COOKIE = "vmportal_session"


@pytest.fixture
def portal(start_portal: Callable[..., Portal], ldap_directory: Directory) -> Portal:
    return start_portal(login_methods=["ldap", "local"], **ldap_settings(ldap_directory.server))


def _page_login(c: httpx.Client, uid: str, password: str | None = None) -> httpx.Response:
    return c.post(
        "/login",
        data={
            "username": uid,
            "password": password if password is not None else staff(uid).password,
            "method": "ldap",
            "next": "/account",
        },
    )


def _me(c: httpx.Client, token: str) -> dict:
    return c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).json()


def test_the_login_page_offers_the_configured_methods(portal: Portal) -> None:
    with portal.client() as c:
        page = c.get("/login").text
    assert 'value="ldap"' in page and 'value="local"' in page
    assert "/auth/cas/login" not in page  # CAS is not configured here


def test_a_center_operator_logs_in_through_ldap_with_the_operator_role(portal: Portal) -> None:
    with portal.client() as c:
        r = _page_login(c, "lisi")
        assert r.status_code == 303, r.text
        assert r.headers["location"] == "/account"
        me = _me(c, r.cookies[COOKIE])
        assert me["username"] == "lisi" and me["role"] == "center_operator" and me["unit_id"] is None
        assert me["display_name"] == "李四"
        assert c.get("/account").status_code == 200
    with db.transaction() as s:
        user = s.exec(select(User).where(User.username == "lisi")).one()
        assert user.auth_source == "ldap"
        logins = s.exec(select(AuditEntry).where(AuditEntry.action == "login")).all()
        assert [r.detail for r in logins] == ["via ldap"]


def test_the_highest_mapped_group_wins(portal: Portal) -> None:
    with portal.client() as c:
        r = _page_login(c, "zhangsan")  # in the admins and the operators groups
        assert _me(c, r.cookies[COOKIE])["role"] == "center_admin"


def test_wrong_password_unknown_person_and_no_group_are_refused(portal: Portal) -> None:
    with portal.client() as c:
        for uid, password in (("lisi", "Not-the-passw0rd"), ("nobody", "Whatever-123!"), ("lisi", "")):
            r = _page_login(c, uid, password)
            assert r.status_code in (401, 422), (uid, r.status_code)
            assert COOKIE not in r.cookies
        r = _page_login(c, "zhaoliu")  # right password, in no portal group
        assert r.status_code == 401 and "不在本系统授权的任何用户组中" in r.text
        r = _page_login(c, "lisi)(uid=*", "x")  # a filter injection is a malformed name, nothing more
        assert r.status_code == 401
    with db.transaction() as s:
        assert s.exec(select(User).where(User.auth_source == "ldap")).all() == []


def test_ldaps_with_the_certificate_verified(
    start_portal: Callable[..., Portal], ldap_directory: Directory, tmp_path: Path
) -> None:
    server = ldap_directory.server
    portal = start_portal(login_methods=["ldap"], **{**ldap_settings(server), "ldap_url": server.ldaps_url})
    with portal.client() as c:
        assert _page_login(c, "lisi").status_code == 303
    # A directory whose certificate does not verify against the configured CA: no log-in, a page.
    other = start_portal(
        login_methods=["ldap"],
        **{**ldap_settings(server), "ldap_ca_file": str(write_unrelated_ca(tmp_path / "other.pem"))},
    )
    with other.client() as c:
        r = _page_login(c, "lisi")
        assert r.status_code == 401 and "无法连接目录服务器" in r.text


def test_a_person_disabled_in_ldap_is_out_after_sync(portal: Portal, ldap_directory: Directory) -> None:
    with portal.client() as c:
        r = _page_login(c, "lisi")
        assert r.status_code == 303
        token = r.cookies[COOKIE]
        assert c.get("/account").status_code == 200
        ldap_directory.disable("lisi")
        with db.transaction() as s:
            result = ldap.sync(s)
        assert result.retired == ["lisi"]
        page = c.get("/account")
        assert page.status_code == 303  # the session ended
        api = c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert api.status_code == 401
        assert _page_login(c, "lisi").status_code == 401  # and cannot log in again
    with db.transaction() as s:
        user = s.exec(select(User).where(User.username == "lisi")).one()
        assert user.active is False
        assert all(t.revoked_at is not None for t in s.exec(select(AuthToken)).all())
        row = s.exec(select(AuditEntry).where(AuditEntry.action == "user.deactivate")).one()
        assert row.actor == "ldap-sync" and "disabled in the directory" in row.detail


def test_a_person_removed_or_out_of_the_groups_is_out_after_sync(
    portal: Portal, ldap_directory: Directory
) -> None:
    with portal.client() as c:
        lisi = _page_login(c, "lisi")
        assert lisi.status_code == 303
        assert _page_login(c, "zhangsan").status_code == 303
    ldap_directory.remove("lisi")
    ldap_directory.remove_from_group("zhangsan", OPERATORS)  # still an admin: stays
    with db.transaction() as s:
        assert ldap.sync(s).retired == ["lisi"]
    with portal.client() as c:
        # The removed person's session and token are gone, and they cannot log in again.
        api = c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {lisi.cookies[COOKIE]}"})
        assert api.status_code == 401
        assert _page_login(c, "lisi").status_code == 401
    with db.transaction() as s:
        lisi_id = s.exec(select(User.id).where(User.username == "lisi")).one()
        assert all(
            t.revoked_at is not None for t in s.exec(select(AuthToken).where(AuthToken.user_id == lisi_id))
        )
    ldap_directory.set_attributes("zhangsan", cn="张三")
    for name in ldap_directory.groups_of("zhangsan"):
        ldap_directory.remove_from_group("zhangsan", name)
    with db.transaction() as s:
        assert ldap.sync(s).retired == ["zhangsan"]
        assert {u.username for u in s.exec(select(User).where(User.active == False)).all()} == {  # noqa: E712
            "lisi",
            "zhangsan",
        }


def test_a_role_taken_away_in_the_directory_follows_at_sync(
    portal: Portal, ldap_directory: Directory
) -> None:
    with portal.client() as c:
        assert _page_login(c, "zhangsan").status_code == 303
    ldap_directory.remove_from_group("zhangsan", "vmportal-admins")
    with db.transaction() as s:
        result = ldap.sync(s)
        assert result.updated == ["zhangsan"] and result.retired == []
        assert s.exec(select(User).where(User.username == "zhangsan")).one().role == "center_operator"


def test_an_unreachable_directory_retires_no_one(
    start_portal: Callable[..., Portal], ldap_directory: Directory
) -> None:
    server = ldap_directory.server
    portal = start_portal(login_methods=["ldap"], **ldap_settings(server))
    with portal.client() as c:
        assert _page_login(c, "lisi").status_code == 303
    broken = start_portal(
        login_methods=["ldap"], **{**ldap_settings(server), "ldap_bind_password": "wrong-service-password"}
    )
    with db.transaction() as s, pytest.raises(ldap.DirectoryUnavailable):
        ldap.sync(s, broken.settings)
    with db.transaction() as s:
        assert s.exec(select(User).where(User.username == "lisi")).one().active is True


def test_the_service_connection_is_reused(portal: Portal, ldap_directory: Directory) -> None:
    source = ldap.directory(portal.settings)
    source.close()
    assert source.find("lisi") is not None
    with source.service() as first:
        pass
    with source.service() as second:
        assert second is first  # the same open connection, not a new one per search
    assert re.match(r"^cn=vmportal-svc", str(second.user))
    assert group_dn(OPERATORS)


def test_the_json_api_logs_in_through_ldap(portal: Portal) -> None:
    with portal.client() as c:
        r = c.post(
            "/api/v1/auth/login",
            json={"username": "lisi", "password": staff("lisi").password, "method": "ldap"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["user"]["role"] == "center_operator"
        wrong = c.post("/api/v1/auth/login", json={"username": "lisi", "password": "x", "method": "ldap"})
        assert wrong.status_code == 401
        bad = c.post("/api/v1/auth/login", json={"username": "lisi", "password": "x", "method": "kerberos"})
        assert bad.status_code == 422 and "method" in bad.text


@pytest.fixture
def silent_directory() -> Iterator[int]:
    """A port on 127.0.0.1 whose server accepts connections and never says a word."""
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
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize("scheme", ["ldap", "ldaps"])
def test_a_directory_that_does_not_answer_is_refused_within_the_timeout(
    start_portal: Callable[..., Portal], ldap_directory: Directory, silent_directory: int, scheme: str
) -> None:
    """StartTLS asked of (ldap://) or the TLS handshake with (ldaps://) a server that never answers:
    the log-in ends after ``ldap_timeout`` with the page, no request hangs (the client's own
    timeout, 30 s, is far above the portal's 1 s)."""
    portal = start_portal(
        login_methods=["ldap", "local"],
        **{
            **ldap_settings(ldap_directory.server),
            "ldap_url": f"{scheme}://127.0.0.1:{silent_directory}",
            "ldap_timeout": 1.0,
        },
    )
    with portal.client() as c:
        r = _page_login(c, "lisi")
        assert r.status_code == 401 and "无法连接目录服务器" in r.text
        assert COOKIE not in r.cookies


@pytest.fixture
def other_name_of_the_directory(ldap_directory: Directory) -> Iterator[int]:
    """127.0.0.2:<port> forwarded to the directory's LDAPS port: the same server, reached by an
    address its certificate (localhost, 127.0.0.1) does not name."""
    target = ("127.0.0.1", ldap_directory.server.ldaps_port)
    listener = socket.socket()
    listener.bind(("127.0.0.2", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    stop = threading.Event()

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := a.recv(65536):
                b.sendall(chunk)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def accept() -> None:
        while not stop.is_set():
            try:
                client = listener.accept()[0]
            except TimeoutError:
                continue
            upstream = socket.create_connection(target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def test_a_certificate_for_another_host_name_is_refused(
    start_portal: Callable[..., Portal], ldap_directory: Directory, other_name_of_the_directory: int
) -> None:
    """The certificate verifies against the CA but names another host: no log-in."""
    portal = start_portal(
        login_methods=["ldap"],
        **{
            **ldap_settings(ldap_directory.server),
            "ldap_url": f"ldaps://127.0.0.2:{other_name_of_the_directory}",
        },
    )
    with portal.client() as c:
        r = _page_login(c, "lisi")
        assert r.status_code == 401 and "无法连接目录服务器" in r.text
    with db.transaction() as s:
        assert s.exec(select(User).where(User.username == "lisi")).first() is None

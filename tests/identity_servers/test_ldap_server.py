"""The test campus directory speaks real LDAP: TLS binds, verified certificates, group searches,
and the changes the center makes (new staff, password changes, leavers) take effect at once."""

from __future__ import annotations

import ssl
from pathlib import Path

import ldap3
import pytest
from ldap3.core.exceptions import LDAPBindError, LDAPSocketOpenError, LDAPStartTLSError

from tests.support.campus_people import (
    ADMINS,
    AUDITORS,
    GROUPS_BASE,
    OPERATORS,
    PEOPLE_BASE,
    Staff,
    group_dn,
    staff,
)
from tests.support.slapd import Directory, SlapdServer
from tests.support.throwaway_ca import write_unrelated_ca

pytestmark = [
    pytest.mark.xdist_group("identity-servers"),
    # ldap3 2.9.1 checks the host name with ssl.match_hostname (deprecated, still correct on 3.11;
    # ldap3 falls back to its own copy where the stdlib one is gone).
    pytest.mark.filterwarnings("ignore:ssl.match_hostname:DeprecationWarning"),
]


def _service(server: SlapdServer) -> ldap3.Connection:
    conn = server.connect(server.service_dn, server.service_password)
    assert conn.bound
    return conn


def _find_person(conn: ldap3.Connection, uid: str) -> dict[str, list[str]] | None:
    conn.search(
        PEOPLE_BASE,
        f"(&(objectClass=inetOrgPerson)(uid={ldap3.utils.conv.escape_filter_chars(uid)}))",
        attributes=["uid", "cn", "mail", "employeeNumber", "ou", "memberOf"],
    )
    entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
    assert len(entries) <= 1
    if not entries:
        return None
    return {name: [str(v) for v in values] for name, values in entries[0]["attributes"].items()}


def _group_names(conn: ldap3.Connection, dn: str) -> set[str]:
    conn.search(
        GROUPS_BASE,
        f"(&(objectClass=groupOfNames)(member={ldap3.utils.conv.escape_filter_chars(dn)}))",
        attributes=["cn"],
    )
    return {str(e["attributes"]["cn"][0]) for e in conn.response or [] if e.get("type") == "searchResEntry"}


def _refused(server: SlapdServer, dn: str, password: str, *, ldaps: bool = False) -> str:
    with pytest.raises(LDAPBindError) as refused:
        server.connect(dn, password, ldaps=ldaps)
    return str(refused.value)


@pytest.mark.parametrize("ldaps", [False, True], ids=["starttls", "ldaps"])
def test_staff_member_binds_over_tls_with_the_certificate_verified(
    slapd_server: SlapdServer, ldaps: bool
) -> None:
    person = staff("zhangsan")
    conn = slapd_server.connect(person.dn, person.password, ldaps=ldaps)
    try:
        assert conn.bound
        assert isinstance(conn.socket, ssl.SSLSocket)
        assert conn.socket.version() in {"TLSv1.2", "TLSv1.3"}
        assert conn.extend.standard.who_am_i() == f"dn:{person.dn}"
    finally:
        conn.unbind()


def test_a_password_sent_in_clear_is_refused(slapd_server: SlapdServer) -> None:
    person = staff("zhangsan")
    plain = ldap3.Connection(
        ldap3.Server(slapd_server.host, port=slapd_server.ldap_port, get_info=ldap3.NONE),
        user=person.dn,
        password=person.password,
    )
    assert plain.bind() is False
    assert plain.result["description"] == "confidentialityRequired"
    plain.unbind()


def test_a_server_certificate_from_an_unknown_ca_is_refused(
    slapd_server: SlapdServer, tmp_path: Path
) -> None:
    person = staff("zhangsan")
    other_ca = str(write_unrelated_ca(tmp_path / "other-ca.pem"))
    with pytest.raises(LDAPStartTLSError, match="CERTIFICATE_VERIFY_FAILED"):
        slapd_server.connect(person.dn, person.password, ca_file=other_ca)
    with pytest.raises(LDAPSocketOpenError, match="CERTIFICATE_VERIFY_FAILED"):
        slapd_server.connect(person.dn, person.password, ldaps=True, ca_file=other_ca)


def test_a_wrong_password_is_refused(slapd_server: SlapdServer) -> None:
    assert "invalidCredentials" in _refused(slapd_server, staff("lisi").dn, "not-" + staff("lisi").password)


def test_the_service_account_finds_a_person_and_their_groups(ldap_directory: Directory) -> None:
    server = ldap_directory.server
    conn = _service(server)
    person = staff("zhangsan")
    found = _find_person(conn, "zhangsan")
    assert found is not None
    assert found["cn"] == ["张三"]
    assert found["mail"] == ["zhangsan@nic.example.edu"]
    assert found["employeeNumber"] == ["20080117"]
    assert found["ou"] == ["网络与信息中心"]
    expected = {ADMINS, OPERATORS, "nic-staff"}
    assert _group_names(conn, person.dn) == expected
    assert set(found["memberOf"]) == {group_dn(name) for name in expected}
    # Someone in no group: both ways of asking agree there is nothing.
    nobody = _find_person(conn, "zhaoliu")
    assert nobody is not None and nobody.get("memberOf", []) == []
    assert _group_names(conn, staff("zhaoliu").dn) == set()
    # The service account reads people, never their password hashes.
    conn.search(PEOPLE_BASE, "(uid=zhangsan)", attributes=["userPassword"])
    assert all(
        not e["attributes"].get("userPassword") for e in conn.response if e.get("type") == "searchResEntry"
    )
    conn.unbind()


def test_anonymous_clients_see_no_one(slapd_server: SlapdServer) -> None:
    server = slapd_server.ldap3_server()
    conn = ldap3.Connection(server, auto_bind=ldap3.AUTO_BIND_TLS_BEFORE_BIND)
    conn.search(PEOPLE_BASE, "(objectClass=inetOrgPerson)", attributes=["uid"])
    assert [e for e in conn.response or [] if e.get("type") == "searchResEntry"] == []
    conn.unbind()


def test_a_disabled_person_cannot_bind_and_belongs_to_no_group(ldap_directory: Directory) -> None:
    server = ldap_directory.server
    person = staff("wangwu")  # the only auditor: the group is left empty, yet remains valid
    ldap_directory.disable(person.uid)
    assert "invalidCredentials" in _refused(server, person.dn, person.password)
    assert "invalidCredentials" in _refused(server, person.dn, person.password, ldaps=True)
    conn = _service(server)
    assert _group_names(conn, person.dn) == set()
    found = _find_person(conn, person.uid)
    assert found is not None and found.get("memberOf", []) == []  # the entry stays, for the audit trail
    assert ldap_directory.members_of(AUDITORS) == []
    conn.unbind()
    ldap_directory.enable(person.uid)
    assert server.connect(person.dn, person.password).bound


def test_a_removed_person_cannot_bind_and_is_gone(ldap_directory: Directory) -> None:
    server = ldap_directory.server
    person = staff("lisi")
    ldap_directory.remove(person.uid)
    assert "invalidCredentials" in _refused(server, person.dn, person.password)
    conn = _service(server)
    assert _find_person(conn, person.uid) is None
    assert _group_names(conn, person.dn) == set()
    assert ldap_directory.members_of(OPERATORS) == [staff("zhangsan").dn]
    conn.unbind()


def test_a_new_staff_member_binds_and_is_in_their_groups(ldap_directory: Directory) -> None:
    newcomer = Staff(
        uid="sunba",
        cn="孙八",
        sn="孙",
        given_name="八",
        employee_number="20240901",
        unit="网络与信息中心",
        password="Sb-2024-nic!",
        groups=(OPERATORS, AUDITORS),
    )
    ldap_directory.add_staff(newcomer)
    server = ldap_directory.server
    assert server.connect(newcomer.dn, newcomer.password).bound
    conn = _service(server)
    assert _group_names(conn, newcomer.dn) == {OPERATORS, AUDITORS}
    found = _find_person(conn, "sunba")
    assert found is not None and found["employeeNumber"] == ["20240901"]
    conn.unbind()


def test_a_changed_password_replaces_the_old_one(ldap_directory: Directory) -> None:
    server = ldap_directory.server
    person = staff("zhaoliu")
    ldap_directory.set_password(person.uid, "Zl-new-2025!", old_password=person.password)
    assert "invalidCredentials" in _refused(server, person.dn, person.password)
    assert server.connect(person.dn, "Zl-new-2025!").bound
    ldap_directory.set_password(person.uid, "Zl-reset-2025!")  # the center's reset, no old password
    assert server.connect(person.dn, "Zl-reset-2025!").bound
    entry = ldap_directory.entry(person.uid)
    assert entry is not None
    assert entry["userPassword"][0].startswith("{SSHA512}")  # the server hashed it


def test_five_wrong_passwords_lock_the_account_until_the_directory_is_reset(
    ldap_directory: Directory,
) -> None:
    server = ldap_directory.server
    person = staff("lisi")
    for _ in range(5):
        _refused(server, person.dn, "wrong")
    assert "invalidCredentials" in _refused(server, person.dn, person.password)
    entry = ldap_directory.entry(person.uid)
    assert entry is not None and entry.get("pwdAccountLockedTime")
    assert ldap_directory.reset() is True
    assert server.connect(person.dn, person.password).bound
    assert ldap_directory.reset() is False  # a successful bind changes nothing

"""The people and groups of the test campus directory, shared by the LDAP and CAS test servers.

One set of staff, as in the university: the CAS server authenticates the same people the LDAP
directory holds, with the same passwords and attributes (工号 is ``employeeNumber``, the unit is
``ou``, group memberships are the DNs of ``groupOfNames`` entries, as OpenLDAP's memberOf shows
them). Tests refer to people through :func:`staff` so a renamed fixture person fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SUFFIX = "dc=nic,dc=example,dc=edu"
PEOPLE_BASE = f"ou=people,{SUFFIX}"
GROUPS_BASE = f"ou=groups,{SUFFIX}"
SERVICES_BASE = f"ou=services,{SUFFIX}"
POLICIES_BASE = f"ou=policies,{SUFFIX}"
MAIL_DOMAIN = "nic.example.edu"

ADMINS = "vmportal-admins"
OPERATORS = "vmportal-operators"
AUDITORS = "vmportal-auditors"

#: Group name -> description. ``nic-staff`` is not a portal group: it shows that a client must
#: pick the groups it cares about out of everything a person belongs to.
GROUPS: dict[str, str] = {
    ADMINS: "虚拟机平台管理员 / VM portal administrators",
    OPERATORS: "虚拟机平台运维人员 / VM portal operators",
    AUDITORS: "虚拟机平台审计人员 / VM portal auditors",
    "nic-staff": "网络与信息中心职工 / NIC staff",
}


def person_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE_BASE}"


def group_dn(name: str) -> str:
    return f"cn={name},{GROUPS_BASE}"


@dataclass(frozen=True)
class Staff:
    """A member of staff as the campus directory knows them."""

    uid: str
    cn: str  # full name as written in Chinese
    sn: str
    given_name: str
    employee_number: str  # 工号
    unit: str  # 所属单位, the LDAP ``ou`` attribute
    password: str
    groups: tuple[str, ...] = ()
    mobile: str | None = None  # present in the directory, never released by CAS
    mail: str = field(default="")

    def __post_init__(self) -> None:
        if not self.mail:
            object.__setattr__(self, "mail", f"{self.uid}@{MAIL_DOMAIN}")

    @property
    def dn(self) -> str:
        return person_dn(self.uid)

    @property
    def group_dns(self) -> list[str]:
        return [group_dn(name) for name in self.groups]

    def cas_attributes(self) -> dict[str, str | list[str]]:
        """The attributes a campus CAS server backed by this directory knows about the person."""
        attributes: dict[str, str | list[str]] = {
            "uid": self.uid,
            "cn": self.cn,
            "displayName": self.cn,
            "mail": self.mail,
            "employeeNumber": self.employee_number,
            "ou": self.unit,
            "memberOf": self.group_dns,
        }
        if self.mobile:
            attributes["mobile"] = self.mobile
        return attributes


STAFF: tuple[Staff, ...] = (
    Staff(
        uid="zhangsan",
        cn="张三",
        sn="张",
        given_name="三",
        employee_number="20080117",
        unit="网络与信息中心",
        password="Zs-2008-nic!",
        groups=(ADMINS, OPERATORS, "nic-staff"),
        mobile="13800000001",
    ),
    Staff(
        uid="lisi",
        cn="李四",
        sn="李",
        given_name="四",
        employee_number="20120342",
        unit="网络与信息中心",
        password="Ls-2012-nic!",
        groups=(OPERATORS, "nic-staff"),
    ),
    Staff(
        uid="wangwu",
        cn="王五",
        sn="王",
        given_name="五",
        employee_number="20150521",
        unit="审计处",
        password="Ww-2015-audit!",
        groups=(AUDITORS,),
    ),
    Staff(
        uid="zhaoliu",
        cn="赵六",
        sn="赵",
        given_name="六",
        employee_number="20190733",
        unit="计算机学院",
        password="Zl-2019-cs!",
    ),
)


def staff(uid: str) -> Staff:
    for person in STAFF:
        if person.uid == uid:
            return person
    raise KeyError(f"no such test staff member: {uid}")

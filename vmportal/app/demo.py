"""Demo data for the embedded default (``vmportal serve --demo``, ``make run``).

What it makes, through the same services the API uses (every row audited as actor ``demo``):

* center accounts: ``center-admin`` (center_admin), ``operator`` (center_operator), ``auditor``;
* 计算机科学与技术学院 (``CS``) and 机电工程学院 (``ME``) with complete paperwork: both contacts of the
  《网络安全联络通讯录》, the signed 《网络安全承诺书》 and 《虚拟机服务协议书》 (small placeholder PDFs
  filed under the upload directory with their SHA-256), registered information systems, a quota;
* 图书馆 (``LIB``) WITHOUT a signed VM service agreement, so its requests are refused by ``paperwork``;
* an admin (unit_admin) and a lead (unit_lead) account per unit, linked to the registry's contacts;
* two IP pools on the simulator connection (``campus-servers``, ``campus-dmz``);
* two delivered VMs of ``CS`` on the simulator (one running, one stopped), with their addresses.

The passwords are fixed and published here and by ``vmportal serve --demo``: they are for a demo on
a laptop, never for a portal anyone else can reach. Each is ``Demo-2026!`` plus a word for the role
(the password rules forbid a password containing the username).

:func:`seed` is idempotent: each item is looked up by its natural key (username, unit code, contact
role, document kind, system name, pool name, VM name) and only what is missing is made, so running it
at every start adds nothing the second time and never overwrites what a user changed since.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlmodel import Session

from hypervisors import CloneSpec, HypervisorAdapter, PowerAction
from hypervisors.base import IPSettings
from policies.roles import Role
from vmportal.audit.service import Who
from vmportal.kit import db
from vmportal.kit.clock import beijing_today
from vmportal.kit.settings import Settings

log = logging.getLogger(__name__)

DEMO = Who.system("demo")

PASSWORDS: dict[Role, str] = {
    Role.CENTER_ADMIN: "Demo-2026!Center",
    Role.CENTER_OPERATOR: "Demo-2026!OnDuty",
    Role.AUDITOR: "Demo-2026!Inspect",
    Role.UNIT_ADMIN: "Demo-2026!UnitAdmin",
    Role.UNIT_LEAD: "Demo-2026!UnitLead",
}


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: Role
    unit_code: str | None
    description: str


@dataclass(frozen=True)
class DemoInfo:
    base_url: str
    logins: tuple[DemoLogin, ...]
    created: int = 0  # items made by this run (0 when everything was there already)
    unit_ids: dict[str, int] = field(default_factory=dict)
    vm_ids: tuple[int, ...] = ()

    def login(self, username: str) -> DemoLogin:
        return next(item for item in self.logins if item.username == username)

    def lines(self) -> list[str]:
        width = max(len(item.username) for item in self.logins)
        out = [
            f"vmportal demo at {self.base_url}/  (API {self.base_url}/api/v1, docs {self.base_url}/docs)",
            "demo logins (for a local demo only):",
        ]
        out += [
            f"  {item.username:<{width}}  {item.password:<20}  {item.description}" for item in self.logins
        ]
        return out

    def banner(self) -> str:
        return "\n".join(self.lines())


# ---- what the demo contains --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Person:
    name: str
    title: str
    office_phone: str
    mobile: str
    email: str
    qq: str = ""
    staff_no: str = ""
    national_id: str = ""


@dataclass(frozen=True)
class _System:
    name: str
    purpose: str
    description: str
    domains: tuple[str, ...]
    responsible_person: str
    responsible_phone: str


@dataclass(frozen=True)
class _VM:
    name: str
    system: str
    template_ref: str
    vcpus: int
    memory_gib: int
    disk_gib: int
    pool: str
    running: bool


@dataclass(frozen=True)
class _Unit:
    code: str
    name_zh: str
    name_en: str
    lead: _Person
    admin: _Person
    vm_agreement: bool
    quota: tuple[int, int, int, int]
    systems: tuple[_System, ...]
    vms: tuple[_VM, ...] = ()


def _national_id(region: str, birth: str, sequence: str) -> str:
    """An 18-character number of the right shape with a valid GB 11643 check digit (made up)."""
    body = region + birth + sequence
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]


_UNITS: tuple[_Unit, ...] = (
    _Unit(
        code="CS",
        name_zh="计算机科学与技术学院",
        name_en="School of Computer Science and Technology",
        lead=_Person("王建国", "副院长", "0516-83591001", "13805161001", "wang.jianguo@cs.example.edu.cn"),
        admin=_Person(
            "李娜",
            "实验中心工程师",
            "0516-83591002",
            "13952161002",
            "li.na@cs.example.edu.cn",
            qq="315270418",
            staff_no="T2008117",
            national_id=_national_id("320311", "19860412", "342"),
        ),
        vm_agreement=True,
        quota=(10, 40, 128, 2000),
        systems=(
            _System(
                "计算机学院课程实验平台",
                "teaching",
                "本科程序设计与操作系统课程的在线实验环境",
                ("lab.cs.example.edu.cn",),
                "张伟",
                "0516-83591010",
            ),
            _System(
                "智能计算科研数据平台",
                "research",
                "国家自然科学基金项目的实验数据管理与共享",
                ("data.cs.example.edu.cn",),
                "陈静",
                "0516-83591020",
            ),
        ),
        vms=(
            _VM("cs-lab-web", "计算机学院课程实验平台", "tpl-rocky-9", 2, 4, 40, "campus-servers", True),
            _VM(
                "cs-research-db",
                "智能计算科研数据平台",
                "tpl-ubuntu-22.04",
                4,
                8,
                100,
                "campus-servers",
                False,
            ),
        ),
    ),
    _Unit(
        code="ME",
        name_zh="机电工程学院",
        name_en="School of Mechatronic Engineering",
        lead=_Person(
            "刘志强", "党委副书记", "0516-83592001", "13705162001", "liu.zhiqiang@me.example.edu.cn"
        ),
        admin=_Person(
            "赵敏",
            "网络管理员",
            "0516-83592002",
            "15162162002",
            "zhao.min@me.example.edu.cn",
            qq="284619035",
            staff_no="T2012045",
            national_id=_national_id("320302", "19900725", "128"),
        ),
        vm_agreement=True,
        quota=(5, 20, 64, 1000),
        systems=(
            _System(
                "机电学院实验室预约管理系统",
                "management",
                "实验室与大型仪器设备的预约和使用登记",
                ("lab-booking.me.example.edu.cn",),
                "孙磊",
                "0516-83592010",
            ),
        ),
    ),
    _Unit(
        code="LIB",
        name_zh="图书馆",
        name_en="University Library",
        lead=_Person("周丽华", "副馆长", "0516-83593001", "13605163001", "zhou.lihua@lib.example.edu.cn"),
        admin=_Person(
            "吴昊",
            "系统部馆员",
            "0516-83593002",
            "18051163002",
            "wu.hao@lib.example.edu.cn",
            qq="520731846",
            staff_no="T2015233",
            national_id=_national_id("320381", "19920308", "057"),
        ),
        vm_agreement=False,  # the agreement is not signed yet: requests are refused by "paperwork"
        quota=(3, 8, 16, 300),
        systems=(
            _System(
                "图书馆座位预约系统",
                "management",
                "阅览室座位的预约、签到与统计",
                ("seat.lib.example.edu.cn",),
                "郑芳",
                "0516-83593010",
            ),
        ),
    ),
)

_CENTER_ACCOUNTS: tuple[tuple[str, Role, str, str], ...] = (
    ("center-admin", Role.CENTER_ADMIN, "信息中心管理员（演示）", "center administrator"),
    ("operator", Role.CENTER_OPERATOR, "信息中心值班人员（演示）", "center operator on duty"),
    ("auditor", Role.AUDITOR, "检查人员（演示）", "auditor (read-only)"),
)


@dataclass(frozen=True)
class _Pool:
    name: str
    cidr: str
    gateway: str
    dns: tuple[str, ...]
    excluded: tuple[str, ...]
    network: str  # the simulator's port group of the same name


_DNS = ("10.10.0.53", "10.10.0.54")
_POOLS: tuple[_Pool, ...] = (
    _Pool(
        "campus-servers",
        "10.10.101.0/24",
        "10.10.101.1",
        _DNS,
        ("10.10.101.2-10.10.101.20", "10.10.101.254"),
        "campus-servers",
    ),
    _Pool("campus-dmz", "10.10.200.0/24", "10.10.200.1", _DNS, ("10.10.200.2-10.10.200.9",), "campus-dmz"),
)


def logins(base_url: str = "") -> tuple[DemoLogin, ...]:
    """The demo accounts and their passwords, without touching the database."""
    items = [
        DemoLogin(username, PASSWORDS[role], role, None, description)
        for username, role, _, description in _CENTER_ACCOUNTS
    ]
    for unit in _UNITS:
        suffix = "" if unit.vm_agreement else ", no signed VM agreement"
        for kind, role in (("admin", Role.UNIT_ADMIN), ("lead", Role.UNIT_LEAD)):
            items.append(
                DemoLogin(
                    _unit_username(unit, kind),
                    PASSWORDS[role],
                    role,
                    unit.code,
                    f"{role.value} of {unit.code} {unit.name_zh}{suffix}",
                )
            )
    return tuple(items)


def _unit_username(unit: _Unit, kind: str) -> str:
    return f"{unit.code.lower()}-{kind}"


# ---- seeding -------------------------------------------------------------------------------------


def placeholder_pdf(title: str) -> bytes:
    """A small, valid one-page PDF saying it stands in for the signed paper."""
    text = f"{title} - demo placeholder for the signed paper copy".replace("(", "[").replace(")", "]")
    stream = f"BT /F1 12 Tf 56 780 Td ({text}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


class _Counter:
    def __init__(self) -> None:
        self.created = 0

    def made(self) -> None:
        self.created += 1


def portal_url(settings: Settings) -> str:
    """Where the portal answers: ``VMPORTAL_BASE_URL`` when set, else the address ``serve`` listens on."""
    if "base_url" in settings.model_fields_set:
        return settings.base_url.rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    return f"http://{host}:{settings.port}"


def seed(settings: Settings, *, announce: bool | None = None) -> DemoInfo:
    """Create whatever of the demo is missing (see the module docstring); print the logins when
    ``announce`` (default: when the settings ask for the demo, i.e. ``serve --demo``)."""
    from vmportal.app.embedded import ensure_simulator_connection

    connection_id = ensure_simulator_connection(settings)
    count = _Counter()
    with db.transaction() as session:
        _center_accounts(session, count)
        unit_ids = {spec.code: _unit(session, settings, spec, count) for spec in _UNITS}
        pools = _pools(session, connection_id, count)
    vm_ids: list[int] = []
    for spec in _UNITS:
        for vm_spec in spec.vms:
            vm_ids.append(_vm(settings, connection_id, unit_ids[spec.code], vm_spec, pools, count))
    info = DemoInfo(
        base_url=portal_url(settings),
        logins=logins(),
        created=count.created,
        unit_ids=unit_ids,
        vm_ids=tuple(vm_ids),
    )
    if count.created:
        log.info("demo data: %d items created", count.created)
    if settings.demo if announce is None else announce:
        print(info.banner(), flush=True)
    return info


def _center_accounts(session: Session, count: _Counter) -> None:
    from vmportal.identity.repository import username_taken
    from vmportal.identity.service import create_user

    for username, role, display_name, _ in _CENTER_ACCOUNTS:
        if not username_taken(session, username):
            create_user(
                session,
                DEMO,
                username=username,
                password=PASSWORDS[role],
                role=role,
                display_name=display_name,
                email=f"{username}@nic.example.edu.cn",
                detail="demo data",
            )
            count.made()


def _beijing_today() -> date:
    return beijing_today()


def _unit(session: Session, settings: Settings, spec: _Unit, count: _Counter) -> int:
    from vmportal.identity.repository import username_taken
    from vmportal.identity.service import create_user
    from vmportal.unit import service as units
    from vmportal.unit.models import ContactRole, DocumentKind
    from vmportal.unit.repository import unit_by_code

    unit = unit_by_code(session, spec.code)
    if unit is None:
        unit = units.create_unit(session, DEMO, code=spec.code, name_zh=spec.name_zh, name_en=spec.name_en)
        # The quota is set once, with the unit: a center admin's later change is never undone.
        max_vms, max_vcpus, max_memory, max_disk = spec.quota
        units.set_quota(
            session,
            DEMO,
            unit.id or 0,
            {
                "max_vms": max_vms,
                "max_vcpus": max_vcpus,
                "max_memory_gib": max_memory,
                "max_disk_gib": max_disk,
            },
        )
        count.made()
    assert unit.id is not None
    unit_id = unit.id

    contacts = {}
    for contact_role, person in (
        (ContactRole.SECURITY_LEAD, spec.lead),
        (ContactRole.SECURITY_ADMIN, spec.admin),
    ):
        contact = units.get_contact(session, unit_id, contact_role)
        if contact is None:
            values: dict[str, str | None] = {
                "name": person.name,
                "title": person.title,
                "office_phone": person.office_phone,
                "mobile": person.mobile,
                "email": person.email,
            }
            if contact_role == ContactRole.SECURITY_ADMIN:
                values |= {"qq": person.qq, "staff_no": person.staff_no, "national_id": person.national_id}
            contact = units.put_contact(session, DEMO, unit_id, contact_role, values)
            count.made()
        contacts[contact_role] = contact

    signed_on = _beijing_today() - timedelta(days=30)
    kinds = [(DocumentKind.COMMITMENT_LETTER, "Network Security Commitment Letter")]
    if spec.vm_agreement:
        kinds.append((DocumentKind.VM_AGREEMENT, "VM Service Agreement"))
    for kind, title in kinds:
        if not units.current_documents(session, unit_id, kind):
            pdf = placeholder_pdf(f"{title} - {spec.code} {spec.name_en}")
            units.file_document(
                session,
                DEMO,
                unit_id,
                kind=kind,
                signer=spec.lead.name,
                signed_on=signed_on,
                filename=f"{spec.code.lower()}-{kind.value}.pdf",
                content_type="application/pdf",
                stream=io.BytesIO(pdf),
                settings=settings,
            )
            count.made()

    existing_systems = {s.name for s in units.list_systems(session, unit_id)}
    for system in spec.systems:
        if system.name not in existing_systems:
            units.create_system(
                session,
                DEMO,
                unit_id,
                {
                    "name": system.name,
                    "purpose": system.purpose,
                    "description": system.description,
                    "domains": list(system.domains),
                    "responsible_person": system.responsible_person,
                    "responsible_phone": system.responsible_phone,
                },
            )
            count.made()

    for account_kind, account_role, contact_role in (
        ("admin", Role.UNIT_ADMIN, ContactRole.SECURITY_ADMIN),
        ("lead", Role.UNIT_LEAD, ContactRole.SECURITY_LEAD),
    ):
        username = _unit_username(spec, account_kind)
        if not username_taken(session, username):
            contact = contacts[contact_role]
            create_user(
                session,
                DEMO,
                username=username,
                password=PASSWORDS[account_role],
                role=account_role,
                unit_id=unit_id,
                display_name=contact.name,
                email=contact.email,
                contact_id=contact.id,
                detail="demo data",
            )
            count.made()
    return unit_id


def _pools(session: Session, connection_id: int, count: _Counter) -> dict[str, int]:
    from vmportal.network import service as network
    from vmportal.network.repository import pool_by_name

    ids: dict[str, int] = {}
    for spec in _POOLS:
        name = spec.name
        pool = pool_by_name(session, name)
        if pool is None:
            pool = network.create_pool(
                session,
                DEMO,
                name=name,
                cidr=spec.cidr,
                gateway=spec.gateway,
                dns=list(spec.dns),
                excluded=list(spec.excluded),
                network=spec.network,
                connection_id=connection_id,
            )
            count.made()
        assert pool.id is not None
        ids[name] = pool.id
    return ids


def _vm(
    settings: Settings, connection_id: int, unit_id: int, spec: _VM, pools: dict[str, int], count: _Counter
) -> int:
    """One delivered VM: cloned on the simulator (marker ``vmportal:demo:<name>``, so a retry finds
    it), its address allocated from the pool, its row and an audit entry."""
    from vmportal.audit.service import record
    from vmportal.connection.service import adapter_for, get_connection
    from vmportal.network import service as network
    from vmportal.network.models import IPPool
    from vmportal.request.service import admin_account_for
    from vmportal.unit.repository import system_id_by_name
    from vmportal.vm import repository as vms
    from vmportal.vm.models import VM

    with db.transaction() as session:
        existing = vms.id_by_name(session, connection_id, unit_id, spec.name)
        if existing is not None:
            return existing
        pool = session.get(IPPool, pools[spec.pool])
        assert pool is not None and pool.id is not None
        adapter: HypervisorAdapter = adapter_for(get_connection(session, connection_id))
        marker = f"vmportal:demo:{spec.name}"
        # A VM left on the simulator by an earlier run whose database was reset is adopted, not cloned
        # twice; the pool then hands out the same lowest free address it had first.
        info = adapter.find_by_marker(marker)
        allocation = network.allocate(session, pool, request_id=None)
        template = next(t for t in adapter.list_templates() if t.ref == spec.template_ref)
        account = admin_account_for(template.name, template.ref)
        if info is None:
            prefix = int(pool.cidr.rsplit("/", 1)[1])
            info = adapter.clone(
                CloneSpec(
                    name=spec.name,
                    template_ref=spec.template_ref,
                    marker=marker,
                    vcpus=spec.vcpus,
                    memory_mib=spec.memory_gib * 1024,
                    disk_gib=spec.disk_gib,
                    network=pool.network or None,
                    ip=IPSettings(
                        address=allocation.address,
                        prefix_length=prefix,
                        gateway=pool.gateway,
                        dns=tuple(pool.dns or ()),
                    ),
                    hostname=spec.name,
                    admin_user=account,
                    power_on=True,
                )
            )
            if not spec.running:
                info = adapter.power(info.ref, PowerAction.STOP)
        system_id = system_id_by_name(session, unit_id, spec.system)
        vm = VM(
            unit_id=unit_id,
            system_id=system_id,
            connection_id=connection_id,
            hypervisor_ref=info.ref,
            name=spec.name,
            hostname=spec.name,
            template_name=template.name,
            vcpus=spec.vcpus,
            memory_gib=spec.memory_gib,
            disk_gib=spec.disk_gib,
            ip_address=allocation.address,
            ips=list(info.ips) or [allocation.address],
            macs=[n.mac for n in info.nics if n.mac],
            admin_account=account,
            power_state=str(info.power_state),
            network_connected=info.network_connected,
            synced_at=db.utcnow(),
        )
        session.add(vm)
        session.flush()
        assert vm.id is not None
        allocation.vm_id = vm.id
        session.add(allocation)
        record(
            session,
            DEMO,
            "vm.create",
            "vm",
            vm.id,
            unit_id=unit_id,
            detail="demo data",
            after={
                "name": vm.name,
                "hypervisor_ref": vm.hypervisor_ref,
                "ip_address": vm.ip_address,
                "power_state": vm.power_state,
                "system_id": system_id,
            },
        )
        count.made()
        return vm.id


__all__ = ["PASSWORDS", "DemoInfo", "DemoLogin", "logins", "placeholder_pdf", "seed"]

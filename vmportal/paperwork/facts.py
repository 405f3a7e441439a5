"""The plain data the forms are made of: a unit, its two registry rows, its information systems.

The same dataclasses go both ways: a caller fills them from its records to pre-fill a PDF or a
spreadsheet, and the import hands them back, parsed and checked, for the caller to upsert.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from vmportal.unit.models import ContactRole
from vmportal.unit.schemas import SystemPurpose

#: The rows of the 网络安全联络通讯录, as the paper form names them.
ROLE_NAMES_ZH: dict[ContactRole, str] = {
    ContactRole.SECURITY_LEAD: "网络安全负责人",
    ContactRole.SECURITY_ADMIN: "网络安全管理员",
}
ROLE_NAMES_EN: dict[ContactRole, str] = {
    ContactRole.SECURITY_LEAD: "security lead",
    ContactRole.SECURITY_ADMIN: "security admin",
}
PURPOSE_NAMES_ZH: dict[SystemPurpose, str] = {
    SystemPurpose.TEACHING: "教学",
    SystemPurpose.RESEARCH: "科研",
    SystemPurpose.MANAGEMENT: "管理",
}


@dataclass(frozen=True)
class ContactRow:
    """One row of the contact registry (附件1). ``source_row`` is the spreadsheet row it came from."""

    role: ContactRole
    name: str
    title: str = ""
    office_phone: str = ""
    mobile: str | None = None
    email: str = ""
    qq: str = ""
    staff_no: str = ""
    national_id: str | None = None
    source_row: int | None = None

    def values(self) -> dict[str, str | None]:
        """The fields as ``vmportal.unit.service.put_contact`` takes them."""
        return {
            "name": self.name,
            "title": self.title,
            "office_phone": self.office_phone,
            "mobile": self.mobile,
            "email": self.email,
            "qq": self.qq,
            "staff_no": self.staff_no,
            "national_id": self.national_id,
        }


@dataclass(frozen=True)
class SystemRow:
    """One row of the information-system registration form (附件4).

    ``key`` is the portal's id of the system (the hidden column of the template); a row without one
    is a system the unit added, matched by :func:`name_key` of its name. ``keep=False`` is the unit
    saying the system is gone (the plan's 清理). ``ips`` is shown in the template for the unit to
    recognise its systems and is never read back. ``launched_on`` has no column in
    ``InformationSystem`` yet; :meth:`values` leaves it out.
    """

    name: str
    purpose: SystemPurpose
    responsible_person: str
    responsible_phone: str = ""
    description: str = ""
    domains: tuple[str, ...] = ()
    key: int | None = None
    launched_on: date | None = None
    keep: bool = True
    ips: tuple[str, ...] = ()
    source_row: int | None = None

    def values(self) -> dict[str, Any]:
        """The fields as ``vmportal.unit.service.create_system`` / ``update_system`` take them."""
        return {
            "name": self.name,
            "purpose": self.purpose,
            "description": self.description,
            "domains": list(self.domains),
            "responsible_person": self.responsible_person,
            "responsible_phone": self.responsible_phone,
        }


@dataclass(frozen=True)
class UnitFacts:
    """What the forms say about a unit. ``contacts`` is optional on the PDFs."""

    code: str
    name_zh: str
    name_en: str = ""
    contacts: tuple[ContactRow, ...] = field(default_factory=tuple)

    def contact(self, role: ContactRole) -> ContactRow | None:
        return next((c for c in self.contacts if c.role == role), None)


def name_key(name: str) -> str:
    """How two system names are compared: full-width folded, case and surrounding spaces ignored.

    The import uses it to find duplicate rows; a caller matching rows without a key to its
    existing systems should use it too, so both agree on what "the same name" is.
    """
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())

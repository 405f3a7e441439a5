"""Request and answer shapes for units and their paperwork, with the format rules of the forms.

Format errors are raised as ``PydanticCustomError(<rule>, …)`` so the API's 422 names both the field
(from pydantic's location) and the rule (``format``, ``checksum``, ``birth_date`` …).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from vmportal.identity.schemas import Username, UserOut
from vmportal.kit.fields import Email, normalise_hostname
from vmportal.unit.models import ContactRole, DocumentKind

# ---- field rules shared by the forms (e-mail and DNS names: kit.fields) -------------------------------

_MOBILE = re.compile(r"1[3-9]\d{9}")
_QQ = re.compile(r"[1-9]\d{4,11}")
_STAFF_NO = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
_PHONE = re.compile(r"\+?[0-9][0-9 ()\-]{3,30}((转|ext\.?|x|#)\s?[0-9]{1,6})?", re.IGNORECASE)
_UNIT_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def _no_control(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise PydanticCustomError("control_characters", "must not contain control characters")
    return value


def normalise_mobile(value: str) -> str:
    digits = re.sub(r"[\s-]", "", value)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if not _MOBILE.fullmatch(digits):
        raise PydanticCustomError(
            "format", "must be a mainland China mobile number: 11 digits starting 13–19 (1[3-9]xxxxxxxxx)"
        )
    return digits


def id_check_digit(first17: str) -> str:
    """The GB 11643-1999 check character (ISO 7064 MOD 11-2) of an 18-character ID number."""
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def national_id_problem(value: str) -> tuple[str, str] | None:
    """(rule, message) when ``value`` is not a valid 18-character resident ID number, else None."""
    if not re.fullmatch(r"\d{17}[\dX]", value):
        return "format", "must be 18 characters: 17 digits then a digit or X"
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return "birth_date", "characters 7–14 must be a real date of birth (YYYYMMDD)"
    if born.year < 1900 or born > date.today():
        return "birth_date", "the date of birth (characters 7–14) is out of range"
    if id_check_digit(value[:17]) != value[17]:
        return "checksum", "the last character does not match the GB 11643 check digit"
    return None


def normalise_national_id(value: str) -> str:
    value = value.strip().upper()
    problem = national_id_problem(value)
    if problem is not None:
        raise PydanticCustomError(problem[0], problem[1])
    return value


def _check(pattern: re.Pattern[str], rule: str, message: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise PydanticCustomError(rule, message)
        return value

    return AfterValidator(check)


Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), AfterValidator(_no_control)
]
ShortText = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=100), AfterValidator(_no_control)
]
LongText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Mobile = Annotated[str, StringConstraints(max_length=20), AfterValidator(normalise_mobile)]
Phone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=40),
    _check(
        _PHONE, "format", "must be a telephone number (digits, spaces, +, -, parentheses; extension 转123)"
    ),
]
QQ = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=12),
    _check(_QQ, "format", "must be a QQ number: 5–12 digits, not starting with 0"),
]
StaffNo = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=40),
    _check(_STAFF_NO, "format", "must be letters, digits, '-' or '_' (at most 40)"),
]
NationalId = Annotated[str, StringConstraints(max_length=18 + 2), AfterValidator(normalise_national_id)]
Hostname = Annotated[str, StringConstraints(max_length=254), AfterValidator(normalise_hostname)]
UnitCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=32),
    _check(_UNIT_CODE, "format", "must be 1–32 letters, digits, '-' or '_'"),
]


class SystemPurpose(StrEnum):
    """What an information system may be for (plan 二(二)4): 教学, 科研, 管理."""

    TEACHING = "teaching"
    RESEARCH = "research"
    MANAGEMENT = "management"


# ---- units ---------------------------------------------------------------------------------------


class UnitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: UnitCode
    name_zh: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    name_en: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""


class UnitPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name_zh: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = (
        None
    )
    name_en: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] | None = None
    active: bool | None = None


class UnitOut(BaseModel):
    id: int
    code: str
    name_zh: str
    name_en: str
    active: bool
    created_at: datetime


# ---- contact registry (网络安全联络通讯录) ------------------------------------------------------


class ContactIn(BaseModel):
    """One row of the registry. Which fields are required depends on the row (lead or admin):
    the service names a missing one with rule ``required``."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    title: ShortText | None = None
    office_phone: Phone | None = None
    mobile: Mobile | None = None
    email: Email | None = None
    qq: QQ | None = None
    staff_no: StaffNo | None = None
    national_id: NationalId | None = None


class ContactOut(BaseModel):
    id: int
    unit_id: int
    role: ContactRole
    name: str
    title: str
    office_phone: str
    mobile: str | None
    email: str
    qq: str
    staff_no: str
    national_id: str | None
    masked: bool = Field(
        description="True when mobile and national_id are shown masked (all but center_admin)."
    )
    updated_at: datetime


# ---- documents ------------------------------------------------------------------------------------


class DocumentForm(BaseModel):
    """The form fields of a document upload (the file itself is the ``file`` part)."""

    kind: DocumentKind
    signer: Name
    signed_on: date


class DocumentOut(BaseModel):
    id: int
    unit_id: int
    kind: DocumentKind
    signer: str
    signed_on: date
    filed_at: datetime
    filed_by: int | None
    filename: str
    content_type: str
    size: int
    sha256: str
    superseded_at: datetime | None
    current: bool


class PaperworkOut(BaseModel):
    unit_id: int
    complete: bool
    missing: list[str] = Field(description='Machine-readable gaps: "security_admin.qq", "vm_agreement" …')
    agreement_filed_at: datetime | None
    message_zh: str = ""
    message_en: str = ""


# ---- information systems (信息系统登记表) -------------------------------------------------------

Domains = Annotated[list[Hostname], Field(max_length=20)]


class SystemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    purpose: SystemPurpose
    description: LongText = ""
    domains: Domains = Field(default_factory=list)
    responsible_person: Name
    responsible_phone: Phone | None = None


class SystemPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    purpose: SystemPurpose | None = None
    description: LongText | None = None
    domains: Domains | None = None
    responsible_person: Name | None = None
    responsible_phone: Phone | None = None


class SystemOut(BaseModel):
    id: int
    unit_id: int
    name: str
    purpose: str
    description: str
    domains: list[str]
    responsible_person: str
    responsible_phone: str
    created_at: datetime


# ---- quota ----------------------------------------------------------------------------------------

# Maxima: far above any one unit's real need, low enough to catch a slip of the keyboard.
MAX_VMS = 1000
MAX_VCPUS = 10_000
MAX_MEMORY_GIB = 64 * 1024
MAX_DISK_GIB = 1024 * 1024


class QuotaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_vms: int = Field(ge=0, le=MAX_VMS)
    max_vcpus: int = Field(ge=0, le=MAX_VCPUS)
    max_memory_gib: int = Field(ge=0, le=MAX_MEMORY_GIB)
    max_disk_gib: int = Field(ge=0, le=MAX_DISK_GIB)


class QuotaOut(BaseModel):
    unit_id: int
    max_vms: int
    max_vcpus: int
    max_memory_gib: int
    max_disk_gib: int
    updated_at: datetime | None


# ---- accounts made from the contact registry ---------------------------------------------------------


class AccountWanted(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact: ContactRole = Field(description="security_admin → unit_admin, security_lead → unit_lead")
    username: Username | None = Field(
        default=None, description="Derived from the staff number, else the e-mail, when left out."
    )


class UnitAccountsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accounts: list[AccountWanted] = Field(
        default_factory=lambda: [
            AccountWanted(contact=ContactRole.SECURITY_ADMIN),
            AccountWanted(contact=ContactRole.SECURITY_LEAD),
        ],
        min_length=1,
        max_length=2,
    )


class CreatedAccountOut(BaseModel):
    contact: ContactRole
    user: UserOut
    initial_password: str = Field(description="Shown in this answer only; the portal keeps no copy.")


class UnitAccountsOut(BaseModel):
    accounts: list[CreatedAccountOut]
    notice: str = (
        "Initial passwords are shown once: hand them to their owners, who should change them at first "
        "log-in (POST /users/{id}/password). 初始密码仅显示一次。"
    )

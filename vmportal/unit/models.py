"""Units (二级单位) and their paperwork: contact registry, signed documents, information systems, quota."""

from __future__ import annotations

import enum
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from vmportal.kit.db import EncryptedString, UTCDateTime, utcnow


class ContactRole(enum.StrEnum):
    SECURITY_LEAD = "security_lead"  # 网络安全负责人
    SECURITY_ADMIN = "security_admin"  # 网络安全管理员


class DocumentKind(enum.StrEnum):
    COMMITMENT_LETTER = "commitment_letter"  # 网络安全承诺书
    VM_AGREEMENT = "vm_agreement"  # 虚拟机服务协议书


class Unit(SQLModel, table=True):
    __tablename__ = "unit"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=32, sa_column_kwargs={"unique": True}, nullable=False)
    name_zh: str = Field(max_length=200)
    name_en: str = Field(default="", max_length=200)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Contact(SQLModel, table=True):
    """One row of the 网络安全联络通讯录: the unit's security lead or security admin."""

    __tablename__ = "contact"
    __table_args__ = (sa.UniqueConstraint("unit_id", "role", name="uq_contact_unit_role"),)

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    role: str = Field(max_length=20)
    name: str = Field(max_length=100)
    title: str = Field(default="", max_length=100)
    office_phone: str = Field(default="", max_length=40)
    mobile: str | None = Field(default=None, sa_type=EncryptedString)
    email: str = Field(default="", max_length=254)
    qq: str = Field(default="", max_length=20)
    staff_no: str = Field(default="", max_length=40)
    national_id: str | None = Field(default=None, sa_type=EncryptedString)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Document(SQLModel, table=True):
    """A signed paper (commitment letter, VM service agreement) with its scanned file."""

    __tablename__ = "document"

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    kind: str = Field(max_length=32)
    signer: str = Field(max_length=100)
    signed_on: date
    filed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    filed_by: int | None = Field(default=None, foreign_key="user.id")
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=100)
    size: int
    sha256: str = Field(max_length=64)
    superseded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class InformationSystem(SQLModel, table=True):
    """A row of the 信息系统登记表: what a VM is for."""

    __tablename__ = "information_system"

    id: int | None = Field(default=None, primary_key=True)
    unit_id: int = Field(foreign_key="unit.id", index=True)
    name: str = Field(max_length=200)
    purpose: str = Field(max_length=20)  # teaching | research | management (policy "purpose")
    description: str = Field(default="", max_length=2000)
    domains: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    responsible_person: str = Field(max_length=100)
    responsible_phone: str = Field(default="", max_length=40)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Quota(SQLModel, table=True):
    __tablename__ = "quota"

    unit_id: int = Field(foreign_key="unit.id", primary_key=True)
    max_vms: int = 0
    max_vcpus: int = 0
    max_memory_gib: int = 0
    max_disk_gib: int = 0
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)

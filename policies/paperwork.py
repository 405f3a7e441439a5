"""Rule ``paperwork``: a unit requests VMs only with its papers complete (plan 二(一); agreement §3).

Complete means: the 《网络安全联络通讯录》 names a security lead (name, title, office phone, mobile,
email) and a security admin (the same plus QQ, staff number and national ID number), and the signed
《网络安全承诺书》 and 《虚拟机服务协议书》 are on file.

Only presence is checked. Formats (an 11-digit mobile, an 18-character ID with its check digit) belong
to the form that records the registry, where a wrong entry can be named and fixed on the spot; a policy
that refused a foreign colleague's passport number would block a unit with no way out. Placeholders
people write into paper forms for "none" (无, 暂无, -, N/A, 待定 …) count as missing: the registry
exists so the center can reach these people.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.base import Verdict
from policies.catalog import RULES

RULE = RULES["paperwork"]


@dataclass(frozen=True)
class ContactFacts:
    name: str | None = None
    title: str | None = None
    office_phone: str | None = None
    mobile: str | None = None
    email: str | None = None
    qq: str | None = None
    staff_no: str | None = None
    national_id: str | None = None


@dataclass(frozen=True)
class PaperworkFacts:
    security_lead: ContactFacts | None
    security_admin: ContactFacts | None
    commitment_letter_on_file: bool
    vm_agreement_on_file: bool


# The registry's own rows (附件1): the admin's row adds QQ, staff number and ID number.
LEAD_FIELDS: tuple[str, ...] = ("name", "title", "office_phone", "mobile", "email")
ADMIN_FIELDS: tuple[str, ...] = (*LEAD_FIELDS, "qq", "staff_no", "national_id")

_PLACEHOLDERS = frozenset(
    {"", "无", "暂无", "没有", "待定", "待补充", "-", "--", "—", "/", "n/a", "na", "none", "null"}
)

# Names as the paper forms print them, so a unit finds each gap on the form it fills in.
_ITEM_NAMES: dict[str, tuple[str, str]] = {
    "name": ("姓名", "name"),
    "title": ("职务", "title"),
    "office_phone": ("办公电话", "office phone"),
    "mobile": ("移动电话", "mobile phone"),
    "email": ("邮箱地址", "email"),
    "qq": ("QQ", "QQ"),
    "staff_no": ("工号", "staff number"),
    "national_id": ("身份证号", "national ID number"),
}
_CONTACT_NAMES: dict[str, tuple[str, str]] = {
    "security_lead": ("网络安全负责人", "security lead"),
    "security_admin": ("网络安全管理员", "security admin"),
}
_DOCUMENT_NAMES: dict[str, tuple[str, str]] = {
    "commitment_letter": ("已签署的《网络安全承诺书》", "the signed security commitment letter"),
    "vm_agreement": ("已签署的《虚拟机服务协议书》", "the signed VM service agreement"),
}


def _filled(value: str | None) -> bool:
    return value is not None and value.strip().casefold() not in _PLACEHOLDERS


def missing_paperwork(facts: PaperworkFacts) -> list[str]:
    """Every missing item, machine-readable: "security_lead.title", "security_admin.qq", "vm_agreement"."""
    missing: list[str] = []
    for contact_key, contact, fields in (
        ("security_lead", facts.security_lead, LEAD_FIELDS),
        ("security_admin", facts.security_admin, ADMIN_FIELDS),
    ):
        missing += [
            f"{contact_key}.{field}"
            for field in fields
            if contact is None or not _filled(getattr(contact, field))
        ]
    if not facts.commitment_letter_on_file:
        missing.append("commitment_letter")
    if not facts.vm_agreement_on_file:
        missing.append("vm_agreement")
    return missing


def _describe(missing: list[str]) -> tuple[str, str]:
    """Group the missing items by contact, in each language: "网络安全管理员的QQ、工号；…"."""
    parts_zh: list[str] = []
    parts_en: list[str] = []
    for contact_key, (contact_zh, contact_en) in _CONTACT_NAMES.items():
        fields = [item.split(".", 1)[1] for item in missing if item.startswith(contact_key + ".")]
        if fields:
            parts_zh.append(f"{contact_zh}的" + "、".join(_ITEM_NAMES[f][0] for f in fields))
            parts_en.append(f"the {contact_en}'s " + ", ".join(_ITEM_NAMES[f][1] for f in fields))
    for document_key, (document_zh, document_en) in _DOCUMENT_NAMES.items():
        if document_key in missing:
            parts_zh.append(document_zh)
            parts_en.append(document_en)
    return "；".join(parts_zh), "; ".join(parts_en)


def check_paperwork(facts: PaperworkFacts) -> Verdict:
    """Allow a unit with complete papers; otherwise deny, listing every missing item.

    The denial's ``field`` is the first missing item; :func:`missing_paperwork` gives them all.
    """
    missing = missing_paperwork(facts)
    if not missing:
        return RULE.allow(
            reason_zh="《网络安全联络通讯录》完整，《网络安全承诺书》和《虚拟机服务协议书》均已签署备案。",
            reason_en=(
                "The contact registry is complete and the commitment letter and VM agreement are on file."
            ),
        )
    listed_zh, listed_en = _describe(missing)
    return RULE.deny(
        message_zh=(
            f"本单位的网络安全材料尚不完整，暂不能申请虚拟机。尚缺：{listed_zh}。"
            "根据《校园网络安全综合治理方案》二（一）和《虚拟机服务协议书》第3条，"
            "各单位须填报《网络安全联络通讯录》，并由主要负责人签署《网络安全承诺书》和《虚拟机服务协议书》报送信息中心。"
            "请补齐后再提交申请。"
        ),
        message_en=(
            "Your unit's security paperwork is incomplete, so it cannot request VMs yet. "
            f"Missing: {listed_en}. "
            "Under plan 二(一) and §3 of the VM service agreement, each unit files a complete contact "
            "registry, and its head signs the security commitment letter and the VM service agreement "
            "and sends them to the center. Please complete them and submit again."
        ),
        field=missing[0],
    )

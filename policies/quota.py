"""Rule ``quota``: a unit's requests stay within its quota unless a center_admin overrides, with a reason.

The paper sets no quota; it is the center's own way of sharing a finite cluster among units. What
counts against the quota is what the unit already has (``used``), what is approved or waiting but not
yet delivered (``pending``) and this request: counting ``pending`` stops a unit from passing the quota
by submitting several requests before the first is delivered.

An override is a recorded decision, so it must come from a center_admin and say why. An
``override_reason`` of None or "" means no override was attempted; a non-blank reason from anyone but
a center_admin is refused even when the request fits, because the app would otherwise record an
override that nobody entitled to one made.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from policies.base import Verdict
from policies.catalog import RULES
from policies.roles import ROLE_NAMES_EN, ROLE_NAMES_ZH, Role

RULE = RULES["quota"]

MIN_OVERRIDE_REASON = 10  # characters after strip: long enough to be a sentence, even in Chinese


@dataclass(frozen=True)
class Resources:
    vms: int = 0
    vcpus: int = 0
    memory_gib: int = 0
    disk_gib: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(*(getattr(self, d) + getattr(other, d) for d in DIMENSIONS))

    def __sub__(self, other: Resources) -> Resources:
        return Resources(*(getattr(self, d) - getattr(other, d) for d in DIMENSIONS))

    def exceeding(self, limit: Resources) -> tuple[str, ...]:
        """The dimensions in which these resources are more than ``limit``."""
        return tuple(d for d in DIMENSIONS if getattr(self, d) > getattr(limit, d))


DIMENSIONS: tuple[str, ...] = tuple(f.name for f in fields(Resources))

DIMENSION_NAMES: dict[str, tuple[str, str]] = {
    "vms": ("虚拟机数量", "VMs"),
    "vcpus": ("vCPU", "vCPUs"),
    "memory_gib": ("内存（GiB）", "memory (GiB)"),
    "disk_gib": ("磁盘（GiB）", "disk (GiB)"),
}


@dataclass(frozen=True)
class QuotaFacts:
    limit: Resources
    used: Resources  # delivered, not decommissioned
    pending: Resources  # approved or waiting, not yet delivered; excludes this request
    requested: Resources

    def __post_init__(self) -> None:
        # Negative stored counts are corrupt data that would silently enlarge the quota; fail loudly.
        for name in ("limit", "used", "pending"):
            if any(getattr(getattr(self, name), d) < 0 for d in DIMENSIONS):
                raise ValueError(f"quota {name} has a negative dimension: {getattr(self, name)}")

    @property
    def total(self) -> Resources:
        return self.used + self.pending + self.requested


def over_quota(facts: QuotaFacts) -> tuple[str, ...]:
    """The dimensions in which used + pending + requested is more than the limit."""
    return facts.total.exceeding(facts.limit)


def _overage(facts: QuotaFacts, dimensions: tuple[str, ...]) -> tuple[str, str]:
    total = facts.total
    zh = "；".join(
        f"{DIMENSION_NAMES[d][0]}：已用 {getattr(facts.used, d)} + 待开通 {getattr(facts.pending, d)} "
        f"+ 本次申请 {getattr(facts.requested, d)} = {getattr(total, d)}，超过配额 {getattr(facts.limit, d)}"
        for d in dimensions
    )
    en = "; ".join(
        f"{DIMENSION_NAMES[d][1]}: {getattr(facts.used, d)} used + {getattr(facts.pending, d)} pending "
        f"+ {getattr(facts.requested, d)} requested = {getattr(total, d)}, over the limit of "
        f"{getattr(facts.limit, d)}"
        for d in dimensions
    )
    return zh, en


def check_quota(facts: QuotaFacts, actor_role: Role | str, override_reason: str | None) -> Verdict:
    """Allow a request within quota, or over it with a center_admin's override and reason."""
    role = Role(actor_role)
    negative = [d for d in DIMENSIONS if getattr(facts.requested, d) < 0]
    if negative:
        names_zh = "、".join(DIMENSION_NAMES[d][0] for d in negative)
        names_en = ", ".join(DIMENSION_NAMES[d][1] for d in negative)
        return RULE.deny(
            message_zh=f"申请的资源不能为负数：{names_zh}。",
            message_en=f"Requested resources cannot be negative: {names_en}.",
            field="requested",
        )

    reason = (override_reason or "").strip()
    if reason and role is not Role.CENTER_ADMIN:
        return RULE.deny(
            message_zh=(
                f"只有信息中心管理员可以超配额批准，{ROLE_NAMES_ZH[role]}不能填写超配额理由。"
                "请删去该理由；如申请超出配额，请联系信息中心。"
            ),
            message_en=(
                f"Only a center administrator may override the quota; a {ROLE_NAMES_EN[role]} cannot give an "
                "override reason. Please remove it; if the request is over quota, contact the center."
            ),
            field="override_reason",
        )

    exceeded = over_quota(facts)
    if not exceeded:
        return RULE.allow(
            reason_zh="申请在本单位配额之内" + ("，无需超配额批准。" if reason else "。"),
            reason_en="The request fits the unit's quota" + ("; no override is needed." if reason else "."),
        )

    overage_zh, overage_en = _overage(facts, exceeded)
    if role is not Role.CENTER_ADMIN:
        return RULE.deny(
            message_zh=(
                f"该申请超出本单位的资源配额：{overage_zh}。"
                "请减少申请的资源、释放不再使用的虚拟机，或联系信息中心调整配额；确有需要时，可由信息中心管理员记录理由后超配额批准。"
            ),
            message_en=(
                f"This request exceeds your unit's quota: {overage_en}. Reduce the request, release VMs you "
                "no longer use, or ask the center to raise the quota; a center administrator may approve it "
                "over quota with a recorded reason."
            ),
            field="requested",
        )
    if len(reason) < MIN_OVERRIDE_REASON:
        return RULE.deny(
            message_zh=(
                f"该申请超出单位配额（{overage_zh}）。超配额批准须记录理由，去除首尾空格后至少 "
                f"{MIN_OVERRIDE_REASON} 个字符，说明为何允许超出配额。"
            ),
            message_en=(
                f"This request exceeds the unit's quota ({overage_en}). Overriding the quota needs a "
                f"recorded reason of at least {MIN_OVERRIDE_REASON} characters (after trimming spaces) "
                "saying why."
            ),
            field="override_reason",
        )
    return RULE.allow(
        reason_zh=f"超出单位配额（{overage_zh}），由信息中心管理员超配额批准，理由：{reason}",
        reason_en=f"Over the unit's quota ({overage_en}); overridden by a center administrator: {reason}",
    )

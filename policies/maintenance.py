"""Rule ``maintenance_notice``: planned outages are announced in advance (agreement §9).

"如甲方因工作需要，对网络重新调整造成的服务中断，甲方会提前通知乙方". The agreement names no lead time;
72 hours is the center's default so that a unit has working days to warn its own users, and the
caller may pass the center's configured value. Outages from line faults, power cuts or disasters are
not planned and §9 asks no notice for them: the app does not run this rule on them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from policies.base import Verdict
from policies.catalog import RULES

RULE = RULES["maintenance_notice"]

MIN_LEAD = timedelta(hours=72)


def _duration(span: timedelta) -> tuple[str, str]:
    # Whole minutes, rounded down, so a notice short of the minimum never reads as equal to it.
    hours, minutes = divmod(int(span.total_seconds() // 60), 60)
    if minutes:
        return f"{hours} 小时 {minutes} 分钟", f"{hours} h {minutes} min"
    return f"{hours} 小时", f"{hours} h"


def check_maintenance_notice(
    announced_at: datetime, starts_at: datetime, min_lead: timedelta = MIN_LEAD
) -> Verdict:
    """Allow a planned outage announced at least ``min_lead`` before it starts."""
    for name, moment in (("announced_at", announced_at), ("starts_at", starts_at)):
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got {moment.isoformat()}")
    if min_lead <= timedelta(0):
        raise ValueError(f"min_lead must be positive, got {min_lead}")

    lead = starts_at - announced_at
    lead_zh, lead_en = _duration(lead)
    need_zh, need_en = _duration(min_lead)
    if lead >= min_lead:
        return RULE.allow(
            reason_zh=f"已提前 {lead_zh}通知受影响单位（至少须提前 {need_zh}）。",
            reason_en=f"Announced {lead_en} ahead to the affected units (at least {need_en} is required).",
        )
    earliest = (announced_at + min_lead).astimezone(starts_at.tzinfo)
    if earliest.second or earliest.microsecond:  # shown to the minute: round up, never suggest too early
        earliest = earliest.replace(second=0, microsecond=0) + timedelta(minutes=1)
    if lead > timedelta(0):
        given_zh, given_en = f"本次通知距开始仅 {lead_zh}", f"this one is announced only {lead_en} ahead"
    else:
        given_zh, given_en = "本次通知不早于开始时间", "this one is announced no earlier than it starts"
    return RULE.deny(
        message_zh=(
            f"计划停机须至少提前 {need_zh}通知受影响的单位（《虚拟机服务协议书》第9条），{given_zh}。"
            f"请将开始时间推迟到 {earliest:%Y-%m-%d %H:%M %z} 或之后。"
        ),
        message_en=(
            f"A planned outage must be announced to the affected units at least {need_en} ahead "
            f"(VM service agreement §9), but {given_en}. "
            f"Please move the start to {earliest:%Y-%m-%d %H:%M %z} or later."
        ),
        field="starts_at",
    )

"""Center-wide settings a center_admin changes at run time (e.g. whether requests need the unit
lead's endorsement). Only known keys exist; each has a type and an initial value from settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from vmportal.audit.service import Who, record
from vmportal.center import repository
from vmportal.center.models import CenterSetting
from vmportal.kit import errors
from vmportal.kit.db import utcnow
from vmportal.kit.settings import Settings, get_settings


@dataclass(frozen=True)
class SettingSpec:
    key: str
    type: type
    initial: Callable[[Settings], Any]  # the value before any center_admin set one
    description_en: str
    description_zh: str
    choices: tuple[Any, ...] = ()  # when set, the only values accepted


KNOWN: dict[str, SettingSpec] = {
    spec.key: spec
    for spec in (
        SettingSpec(
            "endorsement_required",
            bool,
            lambda s: s.endorsement_required,
            "Requests need the unit lead's endorsement before the center decides.",
            "虚拟机申请须经单位网络安全负责人确认后再由信息中心审批。",
        ),
        SettingSpec(
            "unmatched_alert_mail",
            str,
            # An hourly digest: the center hears of every alert no VM matched, without one mail per
            # line of a scanner's burst (vmportal.alerts.unmatched).
            lambda s: "digest",
            "How the center hears of alerts that match no VM: 'each' (one mail per alert), 'digest' "
            "(one mail per hour listing them) or 'off'.",
            "未匹配到虚拟机的告警如何通知信息中心："
            "each（每条告警一封邮件）、digest（每小时一封汇总）或 off（不通知）。",
            choices=("each", "digest", "off"),
        ),
        SettingSpec(
            "maintenance_notice_hours",
            int,
            # policies.maintenance.MIN_LEAD: working days for a unit to warn its own users (agreement §9).
            lambda s: 72,
            "How many hours before a planned outage starts the center must announce it to the affected "
            "units (rule maintenance_notice; an emergency reason overrides it). 1 to 720.",
            "计划停机须提前多少小时通知受影响单位"
            "（规则 maintenance_notice；记录紧急原因时可例外）。1 至 720。",
        ),
    )
}

_UNSET: Any = object()


def _spec(key: str) -> SettingSpec:
    spec = KNOWN.get(key)
    if spec is None:
        raise errors.InvalidField(
            key,
            "unknown_setting",
            f"no such setting (known: {', '.join(sorted(KNOWN))})",
            message_zh=f"没有这个设置项（已知：{', '.join(sorted(KNOWN))}）",
        )
    return spec


def _check_type(spec: SettingSpec, value: Any) -> None:
    # bool is a subclass of int: check bools exactly, and refuse bools where numbers are expected.
    ok = (
        type(value) is bool if spec.type is bool else isinstance(value, spec.type) and type(value) is not bool
    )
    if not ok:
        raise errors.InvalidField(
            spec.key,
            "type",
            f"must be of type {spec.type.__name__}",
            message_zh=f"类型须为 {spec.type.__name__}",
        )


def get_setting(session: Session, key: str, default: Any = _UNSET) -> Any:
    """The stored value; else ``default`` when given; else the known key's initial value."""
    row = repository.setting_row(session, key)
    if row is not None:
        return row.value
    if default is not _UNSET:
        return default
    return _spec(key).initial(get_settings())


def set_setting(session: Session, who: Who, key: str, value: Any) -> Any:
    spec = _spec(key)
    _check_type(spec, value)
    if spec.key == "maintenance_notice_hours" and not 1 <= value <= 720:
        raise errors.InvalidField(
            spec.key, "range", "must be between 1 and 720 hours", message_zh="须在 1 至 720 小时之间"
        )
    if spec.choices and value not in spec.choices:
        allowed = ", ".join(str(c) for c in spec.choices)
        raise errors.InvalidField(
            spec.key, "one_of", f"must be one of: {allowed}", message_zh=f"只能取以下值之一：{allowed}"
        )
    row = repository.lock_setting_row(session, key)
    before = row.value if row is not None else spec.initial(get_settings())
    if row is None:
        row = CenterSetting(key=key, value=value)
    elif row.value == value and type(row.value) is type(value):
        return value
    row.value = value
    row.updated_by = who.actor_id
    row.updated_at = utcnow()
    session.add(row)
    record(session, who, "setting.update", "center_setting", key, before={key: before}, after={key: value})
    return value


def all_settings(session: Session) -> dict[str, Any]:
    return {key: get_setting(session, key) for key in KNOWN}


def unmatched_alert_mail(session: Session) -> str:
    """'each', 'digest' or 'off': how the center hears of alerts that matched no VM."""
    return str(get_setting(session, "unmatched_alert_mail"))


def endorsement_required(session: Session) -> bool:
    """Whether new requests wait for the unit lead's endorsement (the requests team's switch)."""
    return bool(get_setting(session, "endorsement_required"))


def maintenance_notice_hours(session: Session) -> int:
    """How many hours ahead a planned outage must be announced (rule ``maintenance_notice``)."""
    return int(get_setting(session, "maintenance_notice_hours"))

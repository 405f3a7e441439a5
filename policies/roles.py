"""Who acts: the portal's roles (DESIGN "People") and the actor a rule is asked about."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    CENTER_ADMIN = "center_admin"  # 网络与信息中心管理员
    CENTER_OPERATOR = "center_operator"  # 信息中心值班人员
    AUDITOR = "auditor"  # 检查人员: reads everything, changes nothing
    UNIT_ADMIN = "unit_admin"  # 单位网络安全管理员
    UNIT_LEAD = "unit_lead"  # 单位网络安全负责人 / 主要负责人


#: Center staff who act on VMs. The auditor is center-side too, but read-only, so it is not here:
#: every rule that lets "the center" act means these two roles.
CENTER_ROLES: frozenset[Role] = frozenset({Role.CENTER_ADMIN, Role.CENTER_OPERATOR})

#: Roles that belong to one unit and only ever see or act on that unit.
UNIT_ROLES: frozenset[Role] = frozenset({Role.UNIT_ADMIN, Role.UNIT_LEAD})

ROLE_NAMES_ZH: dict[Role, str] = {
    Role.CENTER_ADMIN: "信息中心管理员",
    Role.CENTER_OPERATOR: "信息中心值班人员",
    Role.AUDITOR: "检查人员",
    Role.UNIT_ADMIN: "单位网络安全管理员",
    Role.UNIT_LEAD: "单位网络安全负责人",
}

ROLE_NAMES_EN: dict[Role, str] = {
    Role.CENTER_ADMIN: "center administrator",
    Role.CENTER_OPERATOR: "center operator",
    Role.AUDITOR: "auditor",
    Role.UNIT_ADMIN: "unit security administrator",
    Role.UNIT_LEAD: "unit security lead",
}


def is_center(role: Role | str) -> bool:
    """True for the center staff who may act on any unit's VMs (not the read-only auditor)."""
    return role in CENTER_ROLES


@dataclass(frozen=True)
class Actor:
    user_id: int
    role: Role
    unit_id: int | None  # the unit a unit role belongs to; None for center staff and auditors

    def __post_init__(self) -> None:
        # Coerce so an actor built from a database string compares like one built from the enum,
        # and an unknown role fails here rather than slipping past every rule as "someone else".
        object.__setattr__(self, "role", Role(self.role))
        # A unit role without a unit could only ever be compared against None; refusing to build
        # it keeps "unit_id == vm_unit_id" from being the only thing between a user and a VM.
        if self.role in UNIT_ROLES and self.unit_id is None:
            raise ValueError(f"a {self.role} actor needs the unit_id of their unit")

    def belongs_to(self, unit_id: int) -> bool:
        return self.role in UNIT_ROLES and self.unit_id == unit_id

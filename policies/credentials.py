"""Rule ``credentials_once``: the initial password is handed over once, to the unit (agreement §4).

"向乙方提供虚拟机的IP地址和管理员账号及初始密码，乙方自行妥善保管……甲方不提供恢复密码服务": the
receiver is the unit's security administrator, who is responsible for the VM (plan 二(二)4). The center
holds the password only until that one fetch, so neither center staff nor a second fetch can see it.
"""

from __future__ import annotations

from policies.base import Verdict
from policies.catalog import RULES
from policies.roles import ROLE_NAMES_EN, ROLE_NAMES_ZH, Actor, Role

RULE = RULES["credentials_once"]


def check_credentials_once(actor: Actor, vm_unit_id: int, already_fetched: bool) -> Verdict:
    """Allow the VM's own unit_admin the first fetch of its delivery credentials; deny everyone else."""
    if not (actor.role is Role.UNIT_ADMIN and actor.belongs_to(vm_unit_id)):
        if actor.role is Role.UNIT_ADMIN:
            who_zh, who_en = "其他单位的网络安全管理员", "a security administrator of another unit"
        else:
            who_zh, who_en = ROLE_NAMES_ZH[actor.role], f"a {ROLE_NAMES_EN[actor.role]}"
        return RULE.deny(
            message_zh=(
                f"虚拟机的初始密码只交给该虚拟机所属单位的网络安全管理员（《虚拟机服务协议书》第4条），"
                f"{who_zh}不能查看。"
            ),
            message_en=(
                "A VM's initial password is handed only to the security administrator of the unit that owns "
                f"the VM (VM service agreement §4); {who_en} cannot view it."
            ),
        )
    if already_fetched:
        return RULE.deny(
            message_zh=(
                "该虚拟机的IP地址、管理员账号和初始密码已经领取过，只提供一次。根据《虚拟机服务协议书》第4条，"
                "信息中心不保存该密码，也不提供恢复密码服务。如已遗忘，请用您在虚拟机内设置的其他管理员账号重置密码。"
            ),
            message_en=(
                "This VM's IP address, admin account and initial password have already been collected; they "
                "are handed over only once. Under §4 of the VM service agreement the center keeps no copy of "
                "the password and does not recover passwords. If it is lost, reset it with another "
                "administrator account you set up inside the VM."
            ),
        )
    return RULE.allow(
        reason_zh="本单位网络安全管理员首次领取虚拟机的初始密码；此后将不再显示，请妥善保管。",
        reason_en=(
            "First collection by the unit's security administrator; it will not be shown again, keep it safe."
        ),
    )

from __future__ import annotations

import pytest

from policies.credentials import check_credentials_once
from policies.roles import Actor, Role
from tests.policies._verdicts import assert_allowed, assert_denied

UNIT = 7
OWN_ADMIN = Actor(1, Role.UNIT_ADMIN, UNIT)


def test_the_units_admin_collects_the_credentials_once() -> None:
    assert_allowed(
        check_credentials_once(OWN_ADMIN, UNIT, already_fetched=False),
        "credentials_once",
        zh=["不再显示"],
        en=["will not be shown again"],
    )


def test_a_second_collection_is_refused_and_no_recovery_is_offered() -> None:
    assert_denied(
        check_credentials_once(OWN_ADMIN, UNIT, already_fetched=True),
        "credentials_once",
        zh=["已经领取过", "不提供恢复密码服务", "第4条"],
        en=["already been collected", "only once", "does not recover passwords", "§4"],
    )


@pytest.mark.parametrize(
    ("actor", "zh", "en"),
    [
        (Actor(2, Role.UNIT_ADMIN, 8), "其他单位", "another unit"),
        (Actor(3, Role.UNIT_LEAD, UNIT), "单位网络安全负责人", "unit security lead"),
        (Actor(4, Role.CENTER_ADMIN, None), "信息中心管理员", "center administrator"),
        (Actor(5, Role.CENTER_OPERATOR, None), "信息中心值班人员", "center operator"),
        (Actor(6, Role.AUDITOR, None), "检查人员", "auditor"),
    ],
)
def test_nobody_else_sees_the_password_not_even_the_center(actor: Actor, zh: str, en: str) -> None:
    for fetched in (False, True):
        assert_denied(
            check_credentials_once(actor, UNIT, already_fetched=fetched),
            "credentials_once",
            zh=[zh, "网络安全管理员"],
            en=[en, "security administrator of the unit that owns the VM"],
        )

from __future__ import annotations

import pytest

from policies.roles import Actor, Role, is_center


@pytest.mark.parametrize(
    ("role", "center"),
    [
        (Role.CENTER_ADMIN, True),
        (Role.CENTER_OPERATOR, True),
        (Role.AUDITOR, False),  # read-only: never acts on a VM
        (Role.UNIT_ADMIN, False),
        (Role.UNIT_LEAD, False),
        ("center_operator", True),  # as stored in the database
    ],
)
def test_is_center_means_the_staff_who_act(role: Role | str, center: bool) -> None:
    assert is_center(role) is center


def test_actor_built_from_database_strings_is_typed() -> None:
    actor = Actor(user_id=1, role="unit_admin", unit_id=7)  # type: ignore[arg-type]
    assert actor.role is Role.UNIT_ADMIN
    assert actor.belongs_to(7)
    assert not actor.belongs_to(8)


def test_center_staff_belong_to_no_unit() -> None:
    assert not Actor(1, Role.CENTER_ADMIN, None).belongs_to(7)


@pytest.mark.parametrize("role", [Role.UNIT_ADMIN, Role.UNIT_LEAD])
def test_a_unit_role_without_a_unit_is_refused(role: Role) -> None:
    with pytest.raises(ValueError, match="unit_id"):
        Actor(1, role, None)


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError):
        Actor(1, "superuser", None)  # type: ignore[arg-type]

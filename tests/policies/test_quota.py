from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.quota import DIMENSIONS, QuotaFacts, Resources, check_quota, over_quota
from policies.roles import Role
from tests.policies._verdicts import assert_allowed, assert_denied

LIMIT = Resources(vms=5, vcpus=16, memory_gib=64, disk_gib=1000)
USED = Resources(vms=2, vcpus=8, memory_gib=16, disk_gib=300)
PENDING = Resources(vms=1, vcpus=4, memory_gib=8, disk_gib=100)
REASON = "Exam system for the 2025 national competition, approved by the dean"


def quota(requested: Resources, limit: Resources = LIMIT) -> QuotaFacts:
    return QuotaFacts(limit=limit, used=USED, pending=PENDING, requested=requested)


def test_resources_add_and_subtract_per_dimension() -> None:
    a, b = Resources(1, 2, 3, 4), Resources(10, 20, 30, 40)
    assert a + b == Resources(11, 22, 33, 44)
    assert b - a == Resources(9, 18, 27, 36)
    assert Resources() == Resources(0, 0, 0, 0)
    assert DIMENSIONS == ("vms", "vcpus", "memory_gib", "disk_gib")


def test_a_request_that_fits_is_allowed() -> None:
    assert_allowed(check_quota(quota(Resources(1, 2, 8, 100)), Role.UNIT_ADMIN, None), "quota", en=["fits"])


def test_a_request_that_exactly_fills_the_quota_is_allowed() -> None:
    exactly = LIMIT - USED - PENDING
    assert over_quota(quota(exactly)) == ()
    assert check_quota(quota(exactly), Role.UNIT_ADMIN, None).allowed


def test_over_quota_is_refused_naming_each_dimension_and_its_numbers() -> None:
    facts = quota(Resources(vms=1, vcpus=8, memory_gib=48, disk_gib=100))
    assert over_quota(facts) == ("vcpus", "memory_gib")
    verdict = assert_denied(
        check_quota(facts, Role.UNIT_ADMIN, None),
        "quota",
        field="requested",
        zh=[
            "vCPU：已用 8 + 待开通 4 + 本次申请 8 = 20，超过配额 16",
            "内存（GiB）：已用 16 + 待开通 8 + 本次申请 48 = 72，超过配额 64",
        ],
        en=[
            "vCPUs: 8 used + 4 pending + 8 requested = 20, over the limit of 16",
            "memory (GiB): 16 used + 8 pending + 48 requested = 72, over the limit of 64",
        ],
    )
    # Dimensions within the quota are not blamed.
    assert "磁盘" not in verdict.message_zh
    assert "disk" not in verdict.message_en


def test_pending_requests_count_against_the_quota() -> None:
    # 2 used + 1 pending + 3 requested = 6 VMs > 5, though 2 + 3 alone would fit.
    assert_denied(
        check_quota(quota(Resources(vms=3)), Role.UNIT_ADMIN, None),
        "quota",
        field="requested",
        en=["1 pending"],
    )


def test_a_center_admin_overrides_with_a_recorded_reason() -> None:
    assert_allowed(
        check_quota(quota(Resources(vcpus=8)), Role.CENTER_ADMIN, f"  {REASON}  "),
        "quota",
        zh=["超配额批准", REASON],
        en=["overridden", REASON, "20"],
    )


@pytest.mark.parametrize("reason", [None, "", "   ", "ok", " 123456789 "])
def test_a_center_admin_override_needs_a_real_reason(reason: str | None) -> None:
    assert_denied(
        check_quota(quota(Resources(vcpus=8)), Role.CENTER_ADMIN, reason),
        "quota",
        field="override_reason",
        zh=["10"],
        en=["10 characters"],
    )


@pytest.mark.parametrize("role", [Role.CENTER_OPERATOR, Role.UNIT_ADMIN, Role.UNIT_LEAD, Role.AUDITOR])
def test_nobody_but_a_center_admin_overrides(role: Role) -> None:
    for requested in (Resources(vcpus=8), Resources(vcpus=1)):  # over and within quota alike
        assert_denied(
            check_quota(quota(requested), role, REASON),
            "quota",
            field="override_reason",
            zh=["只有信息中心管理员"],
            en=["Only a center administrator"],
        )


def test_an_override_within_quota_is_not_recorded_as_one() -> None:
    assert_allowed(
        check_quota(quota(Resources(vcpus=1)), Role.CENTER_ADMIN, REASON), "quota", en=["no override"]
    )


def test_negative_requests_are_refused() -> None:
    assert_denied(
        check_quota(quota(Resources(vms=1, disk_gib=-500)), "unit_admin", None),
        "quota",
        field="requested",
        zh=["磁盘"],
        en=["disk"],
    )


def test_corrupt_stored_counts_fail_loudly() -> None:
    with pytest.raises(ValueError, match="used"):
        QuotaFacts(limit=LIMIT, used=Resources(vms=-1), pending=Resources(), requested=Resources())


_amounts = st.builds(Resources, *(st.integers(0, 64) for _ in DIMENSIONS))


@given(limit=_amounts, used=_amounts, pending=_amounts, requested=_amounts, more=_amounts)
def test_asking_for_more_never_turns_a_denial_into_an_allow(
    limit: Resources, used: Resources, pending: Resources, requested: Resources, more: Resources
) -> None:
    smaller = check_quota(QuotaFacts(limit, used, pending, requested), Role.UNIT_ADMIN, None)
    larger = check_quota(QuotaFacts(limit, used, pending, requested + more), Role.UNIT_ADMIN, None)
    assert smaller.allowed or not larger.allowed
    raised = check_quota(QuotaFacts(limit + more, used, pending, requested), Role.UNIT_ADMIN, None)
    assert raised.allowed or not smaller.allowed


@given(limit=_amounts, used=_amounts, pending=_amounts, requested=_amounts)
def test_allowed_exactly_when_every_dimension_fits(
    limit: Resources, used: Resources, pending: Resources, requested: Resources
) -> None:
    total = used + pending + requested
    fits = all(getattr(total, d) <= getattr(limit, d) for d in DIMENSIONS)
    assert check_quota(QuotaFacts(limit, used, pending, requested), Role.UNIT_ADMIN, None).allowed is fits
    # And a center_admin's override with a reason allows either way.
    assert check_quota(QuotaFacts(limit, used, pending, requested), Role.CENTER_ADMIN, REASON).allowed

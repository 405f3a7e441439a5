from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.paperwork import (
    ADMIN_FIELDS,
    LEAD_FIELDS,
    ContactFacts,
    PaperworkFacts,
    check_paperwork,
    missing_paperwork,
)
from tests.policies._verdicts import assert_allowed, assert_denied

LEAD = ContactFacts(
    name="张明",
    title="副院长",
    office_phone="0516-83590000",
    mobile="13800000000",
    email="zhangming@example.edu.cn",
)
ADMIN = ContactFacts(
    name="李华",
    title="实验师",
    office_phone="0516-83591111",
    mobile="13900000000",
    email="lihua@example.edu.cn",
    qq="12345678",
    staff_no="T2017001",
    national_id="320301199001011234",
)
COMPLETE = PaperworkFacts(LEAD, ADMIN, commitment_letter_on_file=True, vm_agreement_on_file=True)

ALL_ITEMS = [
    *(f"security_lead.{f}" for f in LEAD_FIELDS),
    *(f"security_admin.{f}" for f in ADMIN_FIELDS),
    "commitment_letter",
    "vm_agreement",
]


def test_a_unit_with_complete_papers_may_request() -> None:
    assert missing_paperwork(COMPLETE) == []
    assert_allowed(check_paperwork(COMPLETE), "paperwork", zh=["联络通讯录"], en=["contact registry"])


def test_the_lead_needs_no_qq_staff_number_or_id() -> None:
    # The registry form asks those only of the admin (附件1).
    assert missing_paperwork(replace(COMPLETE, security_lead=replace(LEAD, qq=None))) == []


def test_every_missing_item_is_listed_in_both_languages() -> None:
    facts = replace(
        COMPLETE,
        security_lead=replace(LEAD, title="", mobile=None),
        security_admin=replace(ADMIN, qq=None, national_id="  "),
        vm_agreement_on_file=False,
    )
    assert missing_paperwork(facts) == [
        "security_lead.title",
        "security_lead.mobile",
        "security_admin.qq",
        "security_admin.national_id",
        "vm_agreement",
    ]
    assert_denied(
        check_paperwork(facts),
        "paperwork",
        field="security_lead.title",
        zh=[
            "网络安全负责人的职务、移动电话",
            "网络安全管理员的QQ、身份证号",
            "《虚拟机服务协议书》",
            "二（一）",
        ],
        en=[
            "the security lead's title, mobile phone",
            "the security admin's QQ, national ID number",
            "VM service agreement",
        ],
    )


def test_a_missing_contact_lists_each_of_its_items() -> None:
    facts = replace(COMPLETE, security_admin=None)
    assert missing_paperwork(facts) == [f"security_admin.{f}" for f in ADMIN_FIELDS]
    assert_denied(
        check_paperwork(facts),
        "paperwork",
        field="security_admin.name",
        zh=["网络安全管理员的姓名、职务、办公电话、移动电话、邮箱地址、QQ、工号、身份证号"],
        en=["the security admin's name, title, office phone, mobile phone, email, QQ, staff number"],
    )


@pytest.mark.parametrize(
    ("facts", "item", "zh", "en"),
    [
        (
            replace(COMPLETE, commitment_letter_on_file=False),
            "commitment_letter",
            "《网络安全承诺书》",
            "security commitment letter",
        ),
        (
            replace(COMPLETE, vm_agreement_on_file=False),
            "vm_agreement",
            "《虚拟机服务协议书》",
            "VM service agreement",
        ),
    ],
)
def test_an_unsigned_document_is_named(facts: PaperworkFacts, item: str, zh: str, en: str) -> None:
    assert missing_paperwork(facts) == [item]
    assert_denied(check_paperwork(facts), "paperwork", field=item, zh=[zh], en=[en])


@pytest.mark.parametrize("placeholder", ["", "   ", "无", "暂无", "-", "N/A", "none", "待定"])
def test_placeholders_written_for_none_count_as_missing(placeholder: str) -> None:
    facts = replace(COMPLETE, security_admin=replace(ADMIN, qq=placeholder))
    assert missing_paperwork(facts) == ["security_admin.qq"]


@given(st.sets(st.sampled_from(ALL_ITEMS)))
def test_exactly_the_blanked_items_are_missing(blanked: set[str]) -> None:
    def contact(base: ContactFacts, key: str) -> ContactFacts:
        return replace(base, **{f: None for f in ADMIN_FIELDS if f"{key}.{f}" in blanked})

    facts = PaperworkFacts(
        security_lead=contact(LEAD, "security_lead"),
        security_admin=contact(ADMIN, "security_admin"),
        commitment_letter_on_file="commitment_letter" not in blanked,
        vm_agreement_on_file="vm_agreement" not in blanked,
    )
    missing = missing_paperwork(facts)
    assert missing == [item for item in ALL_ITEMS if item in blanked]
    assert check_paperwork(facts).allowed is (not missing)

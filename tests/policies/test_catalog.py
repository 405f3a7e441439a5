from __future__ import annotations

import re

import pytest

from policies import (
    compromise,
    credentials,
    forbidden_services,
    maintenance,
    paperwork,
    power,
    purpose,
    quota,
)
from policies.catalog import RULES

# The table "The rules (the policy layer)" of DESIGN.md: id and the clause it cites.
DESIGN_RULES = {
    "purpose": ("agreement §1", "plan 二(二)4"),
    "paperwork": ("plan 二(一)", "agreement §3"),
    "provisioning_deadline": ("agreement §3",),
    "credentials_once": ("agreement §4",),
    "power_ops": ("plan 二(二)4",),
    "suspended_lock": ("agreement §8", "plan 二(三)3"),
    "compromise": ("agreement §8",),
    "forbidden_services": ("agreement §6",),
    "quota": (),
    "maintenance_notice": ("agreement §9",),
}


def test_every_rule_of_the_design_is_in_the_catalog() -> None:
    assert set(RULES) == set(DESIGN_RULES)


@pytest.mark.parametrize("rule_id", sorted(DESIGN_RULES))
def test_each_rule_cites_its_clause_and_explains_itself_in_both_languages(rule_id: str) -> None:
    rule = RULES[rule_id]
    assert rule.id == rule_id
    assert rule.clause
    for citation in DESIGN_RULES[rule_id]:
        assert citation in rule.clause
    assert re.search(r"[\u4e00-\u9fff]", rule.summary_zh)
    assert re.search(r"[A-Za-z]{3}", rule.summary_en)


@pytest.mark.parametrize("rule_id", sorted(set(DESIGN_RULES) - {"quota"}))
def test_rules_from_the_paper_quote_its_words(rule_id: str) -> None:
    assert re.search(r"[\u4e00-\u9fff]{10}", RULES[rule_id].wording_zh)


def test_the_quota_has_no_clause_in_the_paper() -> None:
    assert RULES["quota"].wording_zh == ""


@pytest.mark.parametrize(
    ("rule", "rule_id"),
    [
        (purpose.RULE, "purpose"),
        (paperwork.RULE, "paperwork"),
        (credentials.RULE, "credentials_once"),
        (power.POWER_RULE, "power_ops"),
        (power.LOCK_RULE, "suspended_lock"),
        (forbidden_services.RULE, "forbidden_services"),
        (quota.RULE, "quota"),
        (maintenance.RULE, "maintenance_notice"),
    ],
)
def test_rule_modules_use_the_catalog_entry(rule: object, rule_id: str) -> None:
    assert rule is RULES[rule_id]


def test_containment_reasons_cite_the_compromise_clause() -> None:
    # decide_containment answers a containment rather than a verdict, so its reasons cite §8 in words.
    assert "第8条" in compromise.decide_containment("virus", "high", "high").reasons_zh[0]

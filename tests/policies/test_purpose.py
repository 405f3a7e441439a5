from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies.purpose import PurposeFacts, check_purpose, news_site_domain, news_site_phrase
from tests.policies._verdicts import assert_allowed, assert_denied

SITE_CLUSTER_ZH = "站点群平台"
SITE_CLUSTER_EN = "site-cluster platform"


def facts(
    purpose: str = "teaching",
    beneficiary: str = "unit",
    system_name: str = "本科教学实验平台",
    description: str = "",
    domains: tuple[str, ...] = (),
) -> PurposeFacts:
    return PurposeFacts(purpose, beneficiary, system_name, description, domains)


@pytest.mark.parametrize(
    ("purpose", "zh"), [("teaching", "教学"), ("research", "科研"), ("management", "管理")]
)
def test_a_units_teaching_research_or_management_system_is_allowed(purpose: str, zh: str) -> None:
    assert_allowed(check_purpose(facts(purpose=purpose)), "purpose", zh=[zh], en=[purpose])


@pytest.mark.parametrize(
    ("purpose", "zh", "en"), [("news", "新闻", "News"), ("publicity", "宣传", "Publicity")]
)
def test_news_and_publicity_are_sent_to_the_site_cluster_platform(purpose: str, zh: str, en: str) -> None:
    assert_denied(
        check_purpose(facts(purpose=purpose)),
        "purpose",
        field="purpose",
        zh=[zh, SITE_CLUSTER_ZH, "第1条"],
        en=[en, SITE_CLUSTER_EN, SITE_CLUSTER_ZH, "§1"],
    )


def test_a_personal_purpose_is_refused() -> None:
    assert_denied(
        check_purpose(facts(purpose="personal")),
        "purpose",
        field="purpose",
        zh=["不分配给个人", "二（二）4"],
        en=["not to individuals", "二(二)4"],
    )


def test_a_request_for_a_person_is_refused_even_for_teaching() -> None:
    assert_denied(
        check_purpose(facts(purpose="teaching", beneficiary="person")),
        "purpose",
        field="beneficiary",
        zh=["个人", "以本单位名义"],
        en=["individuals", "in your unit's name"],
    )


def test_other_purposes_are_refused_naming_the_three_allowed() -> None:
    assert_denied(
        check_purpose(facts(purpose="other")),
        "purpose",
        field="purpose",
        zh=["教学、科研、管理"],
        en=["teaching, research or management"],
    )


def test_a_news_site_for_a_person_is_answered_with_the_site_cluster_pointer() -> None:
    # The more useful answer: a person can't get a VM, but the site has a home on the platform.
    verdict = assert_denied(
        check_purpose(facts(purpose="news", beneficiary="person")), "purpose", field="purpose"
    )
    assert SITE_CLUSTER_ZH in verdict.message_zh


def test_an_unknown_purpose_is_refused_by_name() -> None:
    assert_denied(
        check_purpose(facts(purpose="gaming")), "purpose", field="purpose", zh=["gaming"], en=["gaming"]
    )


def test_an_unknown_beneficiary_is_refused_by_name() -> None:
    assert_denied(
        check_purpose(facts(beneficiary="family")),
        "purpose",
        field="beneficiary",
        zh=["family"],
        en=["family"],
    )


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("计算机学院新闻网", "新闻网"),
        ("学院新闻网站改版", "新闻网站"),
        ("党委宣传部新闻中心", "新闻中心"),
        ("学校新闻门户", "新闻门户"),
        ("院系新闻发布系统", "新闻发布系统"),
        ("招生宣传网站", "宣传网站"),
        ("学院对外宣传平台", "宣传平台"),
        ("School of Mines news website", "news website"),
        ("College News Portal", "news portal"),
        ("Department news-centre", "news centre"),
        ("Open day publicity page", "publicity page"),
        ("Ｎｅｗｓ　Ｐｏｒｔａｌ", "news portal"),  # full-width, as some input methods type it
    ],
)
def test_a_name_that_describes_a_news_or_publicity_site_is_refused(text: str, phrase: str) -> None:
    assert_denied(
        check_purpose(facts(purpose="management", system_name=text)),
        "purpose",
        field="system_name",
        zh=[f"“{phrase}”", SITE_CLUSTER_ZH],
        en=[f"'{phrase}'", SITE_CLUSTER_EN],
    )


def test_a_description_that_describes_a_news_site_is_refused_whatever_the_purpose_says() -> None:
    verdict = assert_denied(
        check_purpose(
            facts(
                purpose="teaching",
                system_name="学院门户",
                description="用于发布学院新闻的新闻网站，展示学院风采",
            )
        ),
        "purpose",
        field="description",
        zh=["系统描述", "新闻网站"],
        en=["description", "news website"],
    )
    # It tells an honest unit how to proceed if the check is wrong about its system.
    assert "重新提交" in verdict.message_zh
    assert "submit again" in verdict.message_en


@pytest.mark.parametrize(
    "text",
    [
        "Newton lab",
        "news-analysis research dataset",
        "A crawler that collects news websites for a media-studies corpus",  # plural: about news sites
        "news website crawler",  # the site is what is studied
        "新闻传播学院融媒体实训平台",  # a teaching platform of the journalism school
        "新闻网络传播研究平台",  # 新闻网络 is a research subject, not 新闻网
        "新闻网站数据采集与分析",
        "网络安全宣传教育报名系统",  # an awareness campaign's registration system
        "宣传部办公管理系统",
        "Renewable energy newsletter archive for the lab",
    ],
)
def test_ordinary_systems_that_merely_mention_news_are_not_mistaken(text: str) -> None:
    assert_allowed(check_purpose(facts(purpose="research", system_name=text, description=text)), "purpose")


@pytest.mark.parametrize(
    "domain", ["news.cs.example.edu.cn", "https://XWW.example.edu.cn/index.html", "xwzx.example.edu.cn:8080"]
)
def test_a_news_sites_domain_is_refused(domain: str) -> None:
    assert_denied(
        check_purpose(facts(domains=("lab.example.edu.cn", domain))),
        "purpose",
        field="domains",
        zh=[domain.strip(), SITE_CLUSTER_ZH],
        en=[domain.strip()],
    )


@pytest.mark.parametrize(
    "domain", ["newton.example.edu.cn", "www.example.edu.cn/news/", "jwc.example.edu.cn"]
)
def test_other_domains_are_not_news_sites(domain: str) -> None:
    assert news_site_domain((domain,)) is None
    assert_allowed(check_purpose(facts(domains=(domain,))), "purpose")


_TRIGGERS = ("新闻", "宣传", "news", "publicity", "promotional")


@given(st.text(max_size=80))
def test_text_without_a_trigger_word_never_reads_as_a_news_site(text: str) -> None:
    folded = unicodedata.normalize("NFKC", text).casefold()
    if any(trigger in folded for trigger in _TRIGGERS):
        return
    assert news_site_phrase(text) is None
    assert_allowed(check_purpose(facts(system_name=text, description=text)), "purpose")

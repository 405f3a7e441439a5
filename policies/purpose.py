"""Rule ``purpose``: what a VM may be lent for (agreement §1; plan 二(二)4).

The center lends VMs only to units, only for information systems used in teaching, research or
management. News and publicity websites belong on the university's site-cluster platform
(站点群平台), so a request for one is refused with a pointer there, whatever purpose it declares.

How a news or publicity website is recognised from its name, description and domains
-------------------------------------------------------------------------------------
A wrong refusal costs a unit a resubmission; a missed news site is still seen by the center
operator who approves every request. So the text check is deliberately narrow:

* it looks for phrases that name a *site*: 新闻网(站), 新闻中心, 新闻门户, 新闻主页/首页, 新闻发布系统/平台,
  宣传网(站), 宣传平台, 宣传主页/首页/页面/门户, and in English "news website/site/portal/homepage/centre",
  "publicity website/site/portal/page/platform", "promotional website/site";
* bare 新闻 / 宣传 / "news" / "publicity" are not enough: 新闻传播学院实训平台, 网络安全宣传教育报名系统,
  "Newton lab" and "news-analysis research dataset" are ordinary teaching, management and research
  systems;
* 新闻网络 ("news network", a research subject) is not 新闻网;
* a phrase followed by a word that makes the site the *object of study* (数据, 爬虫, 语料, 采集, 分析,
  监测, 舆情, 研究; data, dataset, corpus, crawler, scraper, analysis, analytics, research) is
  ignored: 新闻网站数据采集 and "news website crawler" describe research about news sites;
* English plurals are ignored ("crawls news websites"): a system that *is* a news site is one site;
* a domain whose first label is news, xinwen, xwzx (新闻中心) or xww (新闻网) is a news site.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from policies.base import Verdict
from policies.catalog import RULES

RULE = RULES["purpose"]


class Purpose(StrEnum):
    TEACHING = "teaching"  # 教学
    RESEARCH = "research"  # 科研
    MANAGEMENT = "management"  # 管理
    NEWS = "news"  # 新闻
    PUBLICITY = "publicity"  # 宣传
    PERSONAL = "personal"  # 个人
    OTHER = "other"  # 其他


class Beneficiary(StrEnum):
    UNIT = "unit"
    PERSON = "person"


ALLOWED_PURPOSES: frozenset[Purpose] = frozenset({Purpose.TEACHING, Purpose.RESEARCH, Purpose.MANAGEMENT})

PURPOSE_NAMES_ZH: dict[Purpose, str] = {
    Purpose.TEACHING: "教学",
    Purpose.RESEARCH: "科研",
    Purpose.MANAGEMENT: "管理",
    Purpose.NEWS: "新闻",
    Purpose.PUBLICITY: "宣传",
    Purpose.PERSONAL: "个人",
    Purpose.OTHER: "其他",
}


@dataclass(frozen=True)
class PurposeFacts:
    purpose: str  # a Purpose value; kept a str so an unknown value is refused, not a crash
    beneficiary: str  # a Beneficiary value
    system_name: str
    description: str = ""
    domains: tuple[str, ...] = ()


# --- recognising a news or publicity website (see the module docstring for the reasoning) ------

# Words after a site phrase that make the site what the system studies rather than what it is.
_ABOUT_NEWS_SITES = (
    r"(?!\s*的?\s*(?:数据|爬虫|语料|采集|分析|监测|舆情|研究"
    r"|data|dataset|corpus|crawler|crawling|scraper|analysis|analytics|research))"
)

_NEWS_SITE_PHRASES: tuple[re.Pattern[str], ...] = tuple(
    # Atomic, so "新闻网站数据" cannot backtrack to "新闻网" and slip past the guard on "站数据".
    re.compile(f"(?>{phrase}){_ABOUT_NEWS_SITES}")
    for phrase in (
        r"新闻网站?(?!络)",
        r"新闻(?:中心|门户|主页|首页)",
        r"新闻发布(?:系统|平台)",
        r"宣传网站?(?!络)",
        r"宣传(?:平台|主页|首页|页面|门户)",
        # English: singular only, and \b at the end so "websites" and "sites" do not match.
        r"\bnews (?:web ?site|site|portal|home ?page|cent(?:er|re))\b",
        r"\bpublicity (?:web ?site|site|portal|home ?page|page|platform)\b",
        r"\bpromotional (?:web ?site|site)\b",
    )
)

# First labels universities give their news sites: news.xxx.edu.cn, xwzx (新闻中心), xww (新闻网).
_NEWS_HOST_LABELS = frozenset({"news", "xinwen", "xwzx", "xww"})


def _normalise(text: str) -> str:
    # NFKC folds full-width Latin (ｎｅｗｓ) and punctuation; hyphens and runs of spaces become one
    # space so "news-portal" and "news  portal" read like "news portal".
    folded = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\s\-_]+", " ", folded)


def news_site_phrase(text: str) -> str | None:
    """The phrase that marks ``text`` as describing a news or publicity website, if any."""
    normalised = _normalise(text)
    for pattern in _NEWS_SITE_PHRASES:
        found = pattern.search(normalised)
        if found:
            return found.group(0)
    return None


def news_site_domain(domains: tuple[str, ...]) -> str | None:
    """The first domain that names a news site by its first label (news.cs.example.edu.cn)."""
    for domain in domains:
        host = re.sub(r"^[a-z][a-z0-9+.\-]*://", "", domain.strip().casefold())
        host = re.split(r"[/:?#]", host, maxsplit=1)[0]
        if host.split(".", 1)[0] in _NEWS_HOST_LABELS:
            return domain.strip()
    return None


# --- the rule -------------------------------------------------------------------------------

_SITE_CLUSTER_ZH = (
    "根据《虚拟机服务协议书》第1条，新闻性质的网站需通过学校站点群平台建站，"
    "《校园网络安全综合治理方案》二（二）4亦规定不再对新闻网站分配虚拟机。"
    "请联系网络与信息中心站点群负责人，在站点群平台上建设该网站。"
)
_SITE_CLUSTER_EN = (
    "Under §1 of the VM service agreement, news websites are built on the university's site-cluster "
    "platform (站点群平台), and plan 二(二)4 gives no VMs to news websites. Please contact the center's "
    "site-cluster team to build this website on that platform."
)
_REWORD_ZH = (
    "如果该系统并不是新闻或宣传网站（例如以新闻为研究对象的科研系统），请修改名称或描述，写明其实际的教学、科研或管理用途后重新提交，"
    "信息中心审批时会核对。"
)
_REWORD_EN = (
    "If the system is not a news or publicity website (for example, research that studies news), "
    "reword its name or description to state its actual teaching, research or management use and "
    "submit again; the center checks this on approval."
)


def check_purpose(facts: PurposeFacts) -> Verdict:
    """Allow a unit's teaching, research or management system; refuse anything else, naming the field."""
    try:
        purpose = Purpose(facts.purpose)
    except ValueError:
        return RULE.deny(
            message_zh=(
                f"无法识别的用途“{facts.purpose}”。虚拟机仅分配给用于教学、科研、管理的信息系统"
                "（《校园网络安全综合治理方案》二（二）4），请从中选择一项。"
            ),
            message_en=(
                f"Unknown purpose '{facts.purpose}'. VMs are lent only for information systems used in "
                "teaching, research or management (plan 二(二)4); please choose one of them."
            ),
            field="purpose",
        )
    try:
        beneficiary = Beneficiary(facts.beneficiary)
    except ValueError:
        return RULE.deny(
            message_zh=f"无法识别的申请主体“{facts.beneficiary}”。虚拟机只分配给学校各单位，请选择“单位”。",
            message_en=(
                f"Unknown beneficiary '{facts.beneficiary}'. VMs are lent only to the university's units; "
                "please choose 'unit'."
            ),
            field="beneficiary",
        )

    if purpose in (Purpose.NEWS, Purpose.PUBLICITY):
        return RULE.deny(
            message_zh=f"{PURPOSE_NAMES_ZH[purpose]}类网站不分配虚拟机。{_SITE_CLUSTER_ZH}",
            message_en=f"{purpose.capitalize()} websites are not given VMs. {_SITE_CLUSTER_EN}",
            field="purpose",
        )
    if purpose is Purpose.PERSONAL or beneficiary is Beneficiary.PERSON:
        return RULE.deny(
            message_zh=(
                "虚拟机只分配给学校各单位，不分配给个人：《校园网络安全综合治理方案》二（二）4规定“不再对新闻网站或个人分配虚拟机”，"
                "《虚拟机服务协议书》的服务对象也不包括个人。请以本单位名义，为单位的教学、科研或管理信息系统提出申请。"
            ),
            message_en=(
                "VMs are lent to the university's units, not to individuals: plan 二(二)4 gives no VMs to "
                "persons, and the VM service agreement excludes individuals. Please request the VM in your "
                "unit's name, for a teaching, research or management system of the unit."
            ),
            field="purpose" if purpose is Purpose.PERSONAL else "beneficiary",
        )
    if purpose not in ALLOWED_PURPOSES:
        return RULE.deny(
            message_zh=(
                "虚拟机仅分配给用于教学、科研、管理的信息系统（《校园网络安全综合治理方案》二（二）4；"
                "《虚拟机服务协议书》第1条）。请选择教学、科研或管理；不属于这三类的系统不能使用信息中心的虚拟机。"
            ),
            message_en=(
                "VMs are lent only for information systems used in teaching, research or management "
                "(plan 二(二)4; agreement §1). Please choose one of these; a system that is none of them "
                "cannot use the center's VMs."
            ),
            field="purpose",
        )

    # The declared purpose is acceptable; the system's own words may still say it is a news site.
    for field, label_zh, label_en, text in (
        ("system_name", "系统名称", "system name", facts.system_name),
        ("description", "系统描述", "description", facts.description),
    ):
        phrase = news_site_phrase(text)
        if phrase:
            return RULE.deny(
                message_zh=(
                    f"{label_zh}中的“{phrase}”表明这是新闻或宣传网站，此类网站不分配虚拟机。{_SITE_CLUSTER_ZH}{_REWORD_ZH}"
                ),
                message_en=(
                    f"The {label_en} says '{phrase}', which describes a news or publicity website, and such "
                    f"websites are not given VMs. {_SITE_CLUSTER_EN} {_REWORD_EN}"
                ),
                field=field,
            )
    domain = news_site_domain(facts.domains)
    if domain:
        return RULE.deny(
            message_zh=f"域名“{domain}”是新闻网站的域名，此类网站不分配虚拟机。{_SITE_CLUSTER_ZH}",
            message_en=(
                f"The domain '{domain}' is a news website's domain, and such websites are not given VMs. "
                f"{_SITE_CLUSTER_EN}"
            ),
            field="domains",
        )

    return RULE.allow(
        reason_zh=f"用途为{PURPOSE_NAMES_ZH[purpose]}，由单位申请，符合《虚拟机服务协议书》第1条及方案二（二）4。",
        reason_en=f"A {purpose} system requested by a unit, as agreement §1 and plan 二(二)4 allow.",
    )

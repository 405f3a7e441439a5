"""Rule ``compromise``: how a VM found compromised is contained (agreement §8).

"甲方如发现乙方虚拟机因存在中病毒、木马、主动或被动攻击等安全问题影响校园网络正常运行……甲方有权暂时关闭
服务器直到乙方解决为止." The center configures a table of :class:`ContainmentRule` rows; for an alert,
the rows of its category and confidence whose ``min_severity`` the alert reaches apply, and the most
specific (highest ``min_severity``) wins, ties going to the earlier row, so a table reads the same in
any order.

Weak signals never act on their own: a low-confidence alert (Wazuh's "Trojaned version of file"
fires on ordinary binaries) only opens an incident for a human. A table cannot say otherwise:
a low-confidence row with an action other than notify_only is refused when it is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    VIRUS = "virus"
    TROJAN = "trojan"
    WEBSHELL = "webshell"
    BACKDOOR = "backdoor"
    ATTACK = "attack"  # the VM attacks or scans others
    DARK_LINK = "dark_link"  # 暗链
    WEAK_PASSWORD = "weak_password"  # 弱口令: a finding category, not a secret  # noqa: S105
    VULNERABILITY = "vulnerability"
    FORBIDDEN_SERVICE = "forbidden_service"  # agreement §6, see policies.forbidden_services
    OTHER = "other"


class Severity(StrEnum):
    """Ordered by gravity (LOW < CRITICAL), not alphabetically as plain strings would be."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return SEVERITY_ORDER.index(self)

    # A plain str on the other side is read as a Severity, so "low" < "critical" cannot fall back to
    # str's alphabetical comparison; an unknown value raises ValueError.
    def __lt__(self, other: str) -> bool:
        return self.rank < Severity(other).rank

    def __le__(self, other: str) -> bool:
        return self.rank <= Severity(other).rank

    def __gt__(self, other: str) -> bool:
        return self.rank > Severity(other).rank

    def __ge__(self, other: str) -> bool:
        return self.rank >= Severity(other).rank


SEVERITY_ORDER: tuple[Severity, ...] = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


class Confidence(StrEnum):
    HIGH = "high"
    LOW = "low"  # a single weak rule: a human decides


class Containment(StrEnum):
    ISOLATE_NETWORK = "isolate_network"  # disconnect the VM's NICs
    POWER_OFF = "power_off"
    BLOCK_WEB = "block_web"  # block its web service at the edge (plan 二(三)3: 断开WEB服务)
    NOTIFY_ONLY = "notify_only"  # open an incident, notify unit and center, touch nothing


CATEGORY_NAMES_ZH: dict[Category, str] = {
    Category.VIRUS: "病毒",
    Category.TROJAN: "木马",
    Category.WEBSHELL: "网页后门（webshell）",
    Category.BACKDOOR: "后门",
    Category.ATTACK: "对外攻击",
    Category.DARK_LINK: "暗链",
    Category.WEAK_PASSWORD: "弱口令",
    Category.VULNERABILITY: "安全漏洞",
    Category.FORBIDDEN_SERVICE: "违规服务",
    Category.OTHER: "其他安全问题",
}
SEVERITY_NAMES_ZH: dict[Severity, str] = {
    Severity.CRITICAL: "严重",
    Severity.HIGH: "高危",
    Severity.MEDIUM: "中危",
    Severity.LOW: "低危",
}
CONFIDENCE_NAMES_ZH: dict[Confidence, str] = {Confidence.HIGH: "高", Confidence.LOW: "低"}
CONTAINMENT_NAMES_ZH: dict[Containment, str] = {
    Containment.ISOLATE_NETWORK: "断开网络",
    Containment.POWER_OFF: "关机",
    Containment.BLOCK_WEB: "断开WEB服务",
    Containment.NOTIFY_ONLY: "仅通知，转人工研判",
}


@dataclass(frozen=True)
class ContainmentRule:
    category: Category
    min_severity: Severity
    confidence: Confidence  # the alert confidence this row applies to
    action: Containment

    def __post_init__(self) -> None:
        # Coerce so a table loaded from settings (plain strings) behaves like one written in code.
        object.__setattr__(self, "category", Category(self.category))
        object.__setattr__(self, "min_severity", Severity(self.min_severity))
        object.__setattr__(self, "confidence", Confidence(self.confidence))
        object.__setattr__(self, "action", Containment(self.action))
        if self.confidence is Confidence.LOW and self.action is not Containment.NOTIFY_ONLY:
            raise ValueError(
                f"a low-confidence rule may only notify (weak signals go to a human), not {self.action}"
            )

    def describe(self) -> tuple[str, str]:
        """The row in words, (zh, en): "木马 ≥ 高危 → 断开网络", "trojan ≥ high → isolate_network"."""
        return (
            f"{CATEGORY_NAMES_ZH[self.category]} ≥ {SEVERITY_NAMES_ZH[self.min_severity]}"
            f" → {CONTAINMENT_NAMES_ZH[self.action]}",
            f"{self.category} ≥ {self.min_severity} → {self.action}",
        )


_ACTIVE_THREATS = (Category.VIRUS, Category.TROJAN, Category.WEBSHELL, Category.BACKDOOR, Category.ATTACK)

#: The center's starting table: cut the network of a VM that carries malware or attacks others (it
#: keeps running, so evidence survives and the unit can inspect it through the console), block the
#: web service of a site carrying dark links (the site is the harm), notify for everything else.
DEFAULT_TABLE: tuple[ContainmentRule, ...] = (
    *(
        ContainmentRule(category, Severity.HIGH, Confidence.HIGH, Containment.ISOLATE_NETWORK)
        for category in _ACTIVE_THREATS
    ),
    ContainmentRule(Category.DARK_LINK, Severity.LOW, Confidence.HIGH, Containment.BLOCK_WEB),
)


@dataclass(frozen=True)
class ContainmentDecision:
    action: Containment
    rule: ContainmentRule | None  # the table row that decided; None when no row applied
    reasons_en: tuple[str, ...]
    reasons_zh: tuple[str, ...]
    fallback: bool  # True when the row's action could not be used and a stronger one replaced it


def decide_containment(
    category: Category | str,
    severity: Severity | str,
    confidence: Confidence | str,
    table: tuple[ContainmentRule, ...] = DEFAULT_TABLE,
    web_block_supported: bool = True,
) -> ContainmentDecision:
    """The containment for one alert, with the row that chose it and the reasons in both languages."""
    category, severity, confidence = Category(category), Severity(severity), Confidence(confidence)
    alert_zh = (
        f"{CATEGORY_NAMES_ZH[category]}告警"
        f"（{SEVERITY_NAMES_ZH[severity]}，置信度{CONFIDENCE_NAMES_ZH[confidence]}）"
    )
    alert_en = f"A {category} alert of {severity} severity and {confidence} confidence"

    rows = [
        row
        for row in table
        if row.category is category and row.confidence is confidence and severity >= row.min_severity
    ]
    if not rows:
        if confidence is Confidence.LOW:
            zh = (
                f"{alert_zh}属于弱信号，不自动处置：已开立安全事件，"
                "由信息中心人工研判（《虚拟机服务协议书》第8条）。"
            )
            en = (
                f"{alert_en} is a weak signal and is not acted on automatically: "
                "an incident is opened for a human to decide."
            )
        else:
            zh = f"{alert_zh}没有匹配的自动处置规则：通知单位和信息中心，由人工处理。"
            en = f"{alert_en} matches no containment rule: the unit and the center are notified to handle it."
        return ContainmentDecision(Containment.NOTIFY_ONLY, None, (en,), (zh,), fallback=False)

    chosen = max(rows, key=lambda row: row.min_severity.rank)  # max keeps the first of equals
    rule_zh, rule_en = chosen.describe()
    reasons_zh = [f"{alert_zh}匹配处置规则“{rule_zh}”（《虚拟机服务协议书》第8条）。"]
    reasons_en = [f"{alert_en} matches the containment rule '{rule_en}' (VM service agreement §8)."]
    action = chosen.action
    fallback = False
    if action is Containment.BLOCK_WEB and not web_block_supported:
        # Leaving the harm online is not an option the agreement gives; cutting the network also stops
        # the web service, at the cost of everything else the VM serves.
        action, fallback = Containment.ISOLATE_NETWORK, True
        reasons_zh.append("该虚拟机所在环境不支持单独断开WEB服务，改为断开网络。")
        reasons_en.append(
            "Blocking only the web service is not supported for this VM, so its network is isolated instead."
        )
    return ContainmentDecision(action, chosen, tuple(reasons_en), tuple(reasons_zh), fallback)

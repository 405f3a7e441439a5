"""Rule ``forbidden_services``: no proxy, forum, mail or DNS service without approval (agreement §6).

"未经有关部门同意，严禁在服务器上私设代理、论坛、邮件、DNS等类似的服务。若发生以上现象经查明后，甲方有权
关闭虚拟机". A scan (Nmap XML: port, protocol, state, service name and product, script outputs) is
classified one open port at a time. A finding can cost a unit its VM, so each test needs evidence:

* only ports in state ``open`` count; ``open|filtered`` (an unanswered UDP probe) proves nothing;
* mail: TCP 25, 465 or 587, or a mail service name (smtp, submission, imap, pop3 and their TLS forms);
* DNS: port 53 over any protocol, or the service name ``domain`` (Nmap's name for DNS);
* proxy: TCP 3128 or 1080, a SOCKS or Squid service name, a proxy product (Squid, Privoxy, tinyproxy,
  CCProxy, 3proxy), or an ``http-open-proxy`` / ``socks-open-proxy`` script that reports an open proxy.
  Port 8080 alone is not a proxy: Nmap names it ``http-proxy`` from its port table, but it is usually
  Tomcat or Jenkins;
* forum: the ``http-generator`` or ``http-title`` script names forum software (Discuz!, phpBB,
  vBulletin, phpwind, MyBB, XenForo, Flarum, NodeBB, DVBBS, Invision). Discourse is an ordinary English
  word ("Discourse Analysis Lab"), so only the generator counts for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from policies.base import Verdict
from policies.catalog import RULES

RULE = RULES["forbidden_services"]


class ServiceKind(StrEnum):
    MAIL = "mail"
    DNS = "dns"
    PROXY = "proxy"
    FORUM = "forum"


KIND_NAMES: dict[ServiceKind, tuple[str, str]] = {
    ServiceKind.MAIL: ("邮件", "mail"),
    ServiceKind.DNS: ("DNS", "DNS"),
    ServiceKind.PROXY: ("代理", "proxy"),
    ServiceKind.FORUM: ("论坛", "forum"),
}


@dataclass(frozen=True)
class ServiceFacts:
    port: int
    protocol: str  # tcp | udp | sctp
    state: str  # Nmap's port state: open, closed, filtered, open|filtered, ...
    name: str = ""  # Nmap's service name
    product: str = ""
    scripts: Mapping[str, str] = field(default_factory=dict)  # NSE script id -> output


MAIL_PORTS = frozenset({25, 465, 587})
MAIL_NAMES = frozenset({"smtp", "smtps", "submission", "imap", "imaps", "pop3", "pop3s"})
DNS_PORT = 53
DNS_NAMES = frozenset({"domain", "dns"})
PROXY_PORTS = frozenset({3128, 1080})
PROXY_NAMES = frozenset({"socks", "socks4", "socks5", "squid-http"})
PROXY_SCRIPTS = ("http-open-proxy", "socks-open-proxy")

_PROXY_PRODUCT = re.compile(r"\b(?:squid|privoxy|tinyproxy|ccproxy|3proxy)\b", re.IGNORECASE)
_FORUM_SOFTWARE = re.compile(
    r"\b(?:discuz|phpbb|vbulletin|phpwind|mybb|xenforo|flarum|nodebb|dvbbs"
    r"|invision (?:community|power ?board))\b",
    re.IGNORECASE,
)
_FORUM_GENERATOR_ONLY = re.compile(r"\bdiscourse\b", re.IGNORECASE)


def classify_service(service: ServiceFacts) -> ServiceKind | None:
    """The forbidden kind of service an open port runs, or None for anything else."""
    if service.state.strip().lower() != "open":
        return None
    tcp = service.protocol.strip().lower() == "tcp"
    name = service.name.strip().lower()

    if (tcp and service.port in MAIL_PORTS) or name in MAIL_NAMES:
        return ServiceKind.MAIL
    if service.port == DNS_PORT or name in DNS_NAMES:
        return ServiceKind.DNS
    if (
        (tcp and service.port in PROXY_PORTS)
        or name in PROXY_NAMES
        or _PROXY_PRODUCT.search(service.product)
        # The scripts print "Potentially OPEN proxy." only when the probe went through.
        or any("open proxy" in service.scripts.get(script, "").lower() for script in PROXY_SCRIPTS)
    ):
        return ServiceKind.PROXY
    generator = service.scripts.get("http-generator", "")
    title = service.scripts.get("http-title", "")
    if (
        _FORUM_SOFTWARE.search(generator)
        or _FORUM_SOFTWARE.search(title)
        or _FORUM_GENERATOR_ONLY.search(generator)
    ):
        return ServiceKind.FORUM
    return None


def check_forbidden_service(
    kind: ServiceKind | str | None, exempted: bool, *, service: ServiceFacts | None = None
) -> Verdict:
    """Deny a proxy, forum, mail or DNS service the center has not approved; ``service`` adds the port."""
    if kind is None:
        return RULE.allow(reason_zh="未发现违规服务。", reason_en="No forbidden service found.")
    kind = ServiceKind(kind)
    kind_zh, kind_en = KIND_NAMES[kind]
    if exempted:
        return RULE.allow(
            reason_zh=f"该{kind_zh}服务已获信息中心批准（《虚拟机服务协议书》第6条）。",
            reason_en=f"This {kind_en} service is approved by the center (VM service agreement §6).",
        )
    where_zh = where_en = ""
    if service is not None:
        product = f"（{service.product}）" if service.product else ""
        where_zh = f"在 {service.port}/{service.protocol} 端口{product}"
        where_en = f" on {service.port}/{service.protocol}" + (
            f" ({service.product})" if service.product else ""
        )
    return RULE.deny(
        message_zh=(
            f"扫描发现该虚拟机{where_zh}开放了{kind_zh}服务。根据《虚拟机服务协议书》第6条，未经信息中心同意，"
            "严禁在虚拟机上私设代理、论坛、邮件、DNS等服务；经查明后，信息中心有权关闭虚拟机。"
            "请关闭该服务，或向信息中心申请批准。"
        ),
        message_en=(
            f"A scan found a {kind_en} service running on this VM{where_en}. Under §6 of the VM service "
            "agreement, no proxy, forum, mail or DNS service may run on a VM without the center's approval, "
            "and the center may shut the VM down once this is confirmed. Please stop the service or ask "
            "the center to approve it."
        ),
        field="service",
    )

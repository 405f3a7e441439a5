from __future__ import annotations

import pytest

from policies.forbidden_services import ServiceFacts, ServiceKind, check_forbidden_service, classify_service
from tests.policies._verdicts import assert_allowed, assert_denied

# Ports as they appear in a real Nmap report (python-libnmap's test file, see reference/nmap_sample.xml).
POSTFIX = ServiceFacts(25, "tcp", "open", "smtp", "Postfix smtpd")
JENKINS = ServiceFacts(
    8080,
    "tcp",
    "open",
    "tcpwrapped",
    "",
    {"http-headers": "Server: Winstone Servlet Engine v0.9.10\nX-Jenkins: 1.508"},
)
SAMPLE_OTHERS = [
    ServiceFacts(22, "tcp", "open", "ssh", "OpenSSH"),
    ServiceFacts(80, "tcp", "open", "http", "Apache httpd"),
    ServiceFacts(111, "tcp", "open", "rpcbind"),
    ServiceFacts(3306, "tcp", "open", "mysql", "MySQL"),
    ServiceFacts(8009, "tcp", "open", "ajp13"),
    JENKINS,
]


def test_the_sample_reports_postfix_as_mail_and_nothing_else() -> None:
    assert classify_service(POSTFIX) is ServiceKind.MAIL
    assert [classify_service(s) for s in SAMPLE_OTHERS] == [None] * len(SAMPLE_OTHERS)


@pytest.mark.parametrize(
    ("service", "kind"),
    [
        (ServiceFacts(465, "tcp", "open", "smtps"), ServiceKind.MAIL),
        (ServiceFacts(587, "tcp", "open", ""), ServiceKind.MAIL),
        (ServiceFacts(143, "tcp", "open", "imap", "Dovecot imapd"), ServiceKind.MAIL),
        (ServiceFacts(995, "tcp", "open", "pop3s"), ServiceKind.MAIL),
        (ServiceFacts(2525, "tcp", "open", "smtp", "Exim smtpd"), ServiceKind.MAIL),
        (ServiceFacts(53, "udp", "open", "domain", "ISC BIND"), ServiceKind.DNS),
        (ServiceFacts(53, "tcp", "open", "domain"), ServiceKind.DNS),
        (ServiceFacts(5353, "udp", "open", "domain", "dnsmasq"), ServiceKind.DNS),
        (ServiceFacts(3128, "tcp", "open", "squid-http"), ServiceKind.PROXY),
        (ServiceFacts(1080, "tcp", "open", "socks5"), ServiceKind.PROXY),
        (ServiceFacts(8000, "tcp", "open", "http-proxy", "Squid http proxy"), ServiceKind.PROXY),
        (
            ServiceFacts(
                8080,
                "tcp",
                "open",
                "http-proxy",
                "",
                {"http-open-proxy": "Potentially OPEN proxy.\nMethods supported: GET HEAD CONNECT"},
            ),
            ServiceKind.PROXY,
        ),
        (
            ServiceFacts(
                9050,
                "tcp",
                "open",
                "tor-socks",
                "",
                {"socks-open-proxy": "Potentially OPEN proxy.\nVersions succesfully tested: Socks4 Socks5"},
            ),
            ServiceKind.PROXY,
        ),
        (
            ServiceFacts(80, "tcp", "open", "http", "nginx", {"http-generator": "Discuz! X3.4"}),
            ServiceKind.FORUM,
        ),
        (
            ServiceFacts(
                80, "tcp", "open", "http", "Apache httpd", {"http-title": "学院论坛 - Powered by Discuz!"}
            ),
            ServiceKind.FORUM,
        ),
        (
            ServiceFacts(443, "tcp", "open", "https", "", {"http-title": "Board index - phpBB"}),
            ServiceKind.FORUM,
        ),
        (ServiceFacts(80, "tcp", "open", "http", "", {"http-title": "PHPWind 9.0 社区"}), ServiceKind.FORUM),
        (
            ServiceFacts(
                80,
                "tcp",
                "open",
                "http",
                "",
                {"http-generator": "Discourse 3.2.0 - https://github.com/discourse"},
            ),
            ServiceKind.FORUM,
        ),
    ],
)
def test_mail_dns_proxy_and_forum_services_are_recognised(service: ServiceFacts, kind: ServiceKind) -> None:
    assert classify_service(service) is kind


@pytest.mark.parametrize(
    "service",
    [
        ServiceFacts(8080, "tcp", "open", "http-proxy"),  # Nmap's port-table guess; usually Tomcat
        ServiceFacts(8080, "tcp", "open", "http", "Apache Tomcat", {"http-open-proxy": ""}),
        ServiceFacts(80, "tcp", "open", "http", "", {"http-title": "Discourse Analysis Lab"}),
        ServiceFacts(80, "tcp", "open", "http", "", {"http-title": "Newton lab - course forum rules"}),
        ServiceFacts(25, "tcp", "closed", "smtp"),
        ServiceFacts(53, "udp", "open|filtered", "domain"),  # an unanswered UDP probe proves nothing
        ServiceFacts(3128, "tcp", "filtered", "squid-http"),
        ServiceFacts(25, "udp", "open", ""),
    ],
)
def test_ordinary_or_unproven_services_are_not_findings(service: ServiceFacts) -> None:
    assert classify_service(service) is None


def test_no_finding_is_allowed() -> None:
    assert_allowed(check_forbidden_service(None, exempted=False), "forbidden_services")


def test_an_approved_service_is_allowed() -> None:
    assert_allowed(
        check_forbidden_service("dns", exempted=True), "forbidden_services", zh=["已获信息中心批准"]
    )


@pytest.mark.parametrize(
    ("kind", "zh", "en"),
    [
        (ServiceKind.MAIL, "邮件", "mail"),
        (ServiceKind.DNS, "DNS", "DNS"),
        (ServiceKind.PROXY, "代理", "proxy"),
        (ServiceKind.FORUM, "论坛", "forum"),
    ],
)
def test_an_unapproved_service_is_a_violation(kind: ServiceKind, zh: str, en: str) -> None:
    assert_denied(
        check_forbidden_service(kind, exempted=False),
        "forbidden_services",
        field="service",
        zh=[f"开放了{zh}服务", "第6条", "有权关闭虚拟机"],
        en=[f"a {en} service", "§6", "shut the VM down"],
    )


def test_the_violation_names_the_port_and_product() -> None:
    assert_denied(
        check_forbidden_service(classify_service(POSTFIX), exempted=False, service=POSTFIX),
        "forbidden_services",
        field="service",
        zh=["25/tcp", "Postfix smtpd", "邮件"],
        en=["on 25/tcp (Postfix smtpd)"],
    )


def test_an_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        check_forbidden_service("ftp", exempted=False)

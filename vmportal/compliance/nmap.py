"""Nmap XML reports (nmap.org/book/nmap-dtd.html) → hosts, open ports, and forbidden services.

The center uploads a report of a scan of the VM address pool; every open port is classified by the
``forbidden_services`` rule (``policies.forbidden_services.classify_service``: mail, DNS, proxy,
forum). Which VM a finding belongs to is the caller's business (the host's addresses against the
inventory), as is raising a violation once per appearance (:attr:`ServiceFinding.key`).

The XML is read safely without defusedxml (not installed): expat is driven directly and refuses any
entity declaration, external entity, external DTD or internal DTD subset before it is used, so
neither "billion laughs" nor XXE can run. A bare ``<!DOCTYPE nmaprun>`` — which Nmap 7 writes at the
top of every report — is allowed: it declares nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn
from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat

from policies.forbidden_services import ServiceFacts, ServiceKind, classify_service
from vmportal.alerts.model import ParseError, normalise_host, normalise_ip

__all__ = [
    "MAX_REPORT_BYTES",
    "NmapHost",
    "NmapPort",
    "NmapReport",
    "NmapScript",
    "ServiceFinding",
    "forbidden_services",
    "parse_nmap_xml",
    "safe_xml_root",
]

MAX_REPORT_BYTES = 64 * 1024 * 1024
MAX_SCRIPT_OUTPUT = 8 * 1024


class _Refused(Exception):
    pass


def _refuse(what: str) -> NoReturn:
    raise _Refused(what)


def safe_xml_root(data: bytes | str) -> Element:
    """Parse XML into an ElementTree element, refusing entity declarations and DTDs that declare things."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_REPORT_BYTES:
        raise ParseError(f"nmap: the report is larger than {MAX_REPORT_BYTES // (1024 * 1024)} MiB")
    builder = TreeBuilder()
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def doctype(name: str, system_id: str | None, public_id: str | None, has_internal_subset: int) -> None:
        if system_id or public_id:
            _refuse(f"a DOCTYPE naming an external DTD ({system_id or public_id!s:.80})")
        if has_internal_subset:
            _refuse("a DOCTYPE with an internal subset (it can declare entities)")

    def entity(*_args: Any) -> None:
        _refuse("an ENTITY declaration")

    def external_entity(*_args: Any) -> int:
        _refuse("a reference to an external entity")

    def start(tag: str, attrs: dict[str, str]) -> None:
        builder.start(tag, attrs)

    def end(tag: str) -> None:
        builder.end(tag)

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.ExternalEntityRefHandler = external_entity
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(raw, True)
    except _Refused as refused:
        raise ParseError(f"nmap: the XML contains {refused}, which is refused for safety") from None
    except expat.ExpatError as error:
        raise ParseError(
            f"nmap: not well-formed XML: {expat.ErrorString(error.code)} at line {error.lineno} "
            f"column {error.offset}",
            code="malformed_xml",
        ) from None
    return builder.close()


@dataclass(frozen=True)
class NmapScript:
    id: str
    output: str


@dataclass(frozen=True)
class NmapPort:
    protocol: str  # tcp, udp, sctp, ip
    port: int
    state: str  # open, closed, filtered, open|filtered, ...
    service: str = ""  # Nmap's service name (smtp, http, domain, ...)
    product: str = ""
    version: str = ""
    extrainfo: str = ""
    tunnel: str = ""  # "ssl" when the service runs over TLS
    scripts: tuple[NmapScript, ...] = ()

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    def facts(self) -> ServiceFacts:
        return ServiceFacts(
            port=self.port,
            protocol=self.protocol,
            state=self.state,
            name=self.service,
            product=self.product,
            scripts={s.id: s.output for s in self.scripts},
        )


@dataclass(frozen=True)
class NmapHost:
    status: str  # up, down, unknown
    addresses: tuple[str, ...]  # IPv4 and IPv6, normalised like alert addresses
    mac: str | None
    hostnames: tuple[str, ...]  # normalised (lowercase, no trailing dot)
    ports: tuple[NmapPort, ...]  # every port Nmap listed (not the collapsed <extraports>)
    scripts: tuple[NmapScript, ...] = ()  # <hostscript>

    @property
    def open_ports(self) -> tuple[NmapPort, ...]:
        return tuple(p for p in self.ports if p.is_open)


@dataclass(frozen=True)
class NmapReport:
    scanner: str
    version: str
    args: str
    started_at: datetime | None
    hosts: tuple[NmapHost, ...]


@dataclass(frozen=True)
class ServiceFinding:
    addresses: tuple[str, ...]
    hostnames: tuple[str, ...]
    port: NmapPort
    kind: ServiceKind

    @property
    def key(self) -> str:
        """What identifies this appearance on a VM: ``tcp/25/mail``. With the VM, the caller raises a
        violation when the key is new and not again while it stays open."""
        return f"{self.port.protocol}/{self.port.port}/{self.kind.value}"


def _scripts(parent: Element) -> tuple[NmapScript, ...]:
    out = []
    for script in parent.findall("script"):
        script_id = (script.get("id") or "").strip()
        if script_id:
            out.append(NmapScript(script_id, (script.get("output") or "")[:MAX_SCRIPT_OUTPUT]))
    return tuple(out)


def _port(element: Element, host_index: int) -> NmapPort:
    portid = element.get("portid", "")
    if not portid.isdigit() or not 0 <= int(portid) <= 65535:
        raise ParseError(
            f"nmap: host {host_index}: port has portid {portid[:20]!r}, not a port number",
            field="host.ports.port@portid",
        )
    state = element.find("state")
    service = element.find("service")
    attrs: Mapping[str, str] = service.attrib if service is not None else {}
    return NmapPort(
        protocol=(element.get("protocol") or "tcp").strip().lower(),
        port=int(portid),
        state=(state.get("state", "unknown") if state is not None else "unknown").strip().lower(),
        service=attrs.get("name", "").strip(),
        product=attrs.get("product", "").strip(),
        version=attrs.get("version", "").strip(),
        extrainfo=attrs.get("extrainfo", "").strip(),
        tunnel=attrs.get("tunnel", "").strip(),
        scripts=_scripts(element),
    )


def _host(element: Element, index: int) -> NmapHost:
    status = element.find("status")
    addresses: list[str] = []
    mac = None
    for address in element.findall("address"):
        kind = (address.get("addrtype") or "ipv4").lower()
        if kind == "mac":
            mac = (address.get("addr") or "").upper() or None
            continue
        ip = normalise_ip(address.get("addr"))
        if ip is None:
            raise ParseError(
                f"nmap: host {index}: address {address.get('addr', '')[:60]!r} is not an IP address",
                field="host.address@addr",
            )
        if ip not in addresses:
            addresses.append(ip)
    hostnames: list[str] = []
    for hostname in element.findall("hostnames/hostname"):
        name = normalise_host(hostname.get("name"))
        if name and name not in hostnames:
            hostnames.append(name)
    hostscript = element.find("hostscript")
    return NmapHost(
        status=(status.get("state", "unknown") if status is not None else "unknown"),
        addresses=tuple(addresses),
        mac=mac,
        hostnames=tuple(hostnames),
        ports=tuple(_port(p, index) for p in element.findall("ports/port")),
        scripts=_scripts(hostscript) if hostscript is not None else (),
    )


def parse_nmap_xml(data: bytes | str) -> NmapReport:
    """Read an Nmap ``-oX`` report; ParseError saying why when it is not one."""
    root = safe_xml_root(data)
    if root.tag != "nmaprun":
        raise ParseError(
            f"nmap: the root element is <{root.tag[:40]}>, not <nmaprun>: not an Nmap XML report"
        )
    start = root.get("start", "")
    started_at = datetime.fromtimestamp(int(start), tz=UTC) if start.isdigit() and len(start) <= 11 else None
    return NmapReport(
        scanner=root.get("scanner", ""),
        version=root.get("version", ""),
        args=root.get("args", ""),
        started_at=started_at,
        hosts=tuple(_host(h, i) for i, h in enumerate(root.findall("host"))),
    )


def forbidden_services(report: NmapReport) -> list[ServiceFinding]:
    """Every open port running a mail, DNS, proxy or forum service, per ``policies.forbidden_services``.

    Exemptions are the caller's to apply (``check_forbidden_service(kind, exempted)``).
    """
    findings = []
    for host in report.hosts:
        for port in host.open_ports:
            kind = classify_service(port.facts())
            if kind is not None:
                findings.append(ServiceFinding(host.addresses, host.hostnames, port, kind))
    return findings

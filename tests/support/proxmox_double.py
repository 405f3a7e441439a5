"""A stateful Proxmox VE API double that checks every request against PVE's own API schema.

No Proxmox simulator exists, so the adapter's tests talk to this: a real HTTPS server on loopback
(proxmoxer's https backend cannot speak plain HTTP) that answers the way a PVE 9.1.3 node does.
Before any state is touched, each request is matched against ``tests/data/pve-api-schema-9.1.3.json``
exactly as ``PVE::RESTHandler`` would: an unknown path or method is a 501, a missing, unknown or
ill-typed parameter a 400 "Parameter verification failed." with ``{"errors": {...}, "data": null}``.
A double that accepted whatever the adapter sent would only prove the adapter agrees with itself.

Every request is recorded (:attr:`ProxmoxDouble.requests`) so a test can assert that nothing the
adapter sent was refused by the schema (:meth:`ProxmoxDouble.assert_all_valid`).

Tasks behave like PVE workers: mutating calls return a UPID at once and their effect lands when the
task finishes, ``task_delay`` seconds later, observed through ``/nodes/{node}/tasks/{upid}/status``.
Tasks are advanced lazily at the start of every request, so no background thread mutates state
between a test's assertions.

Use the ``proxmox_double`` fixture by loading this module as a plugin in the test module (importing
the fixture by name would trip ruff's F811 and skip pytest's assert rewriting here)::

    pytest_plugins = ["tests.support.proxmox_double"]

    def test_something(proxmox_double: ProxmoxDouble) -> None:
        adapter = create(proxmox_double.connection_config())

``ProxmoxDouble(tls=False)`` serves plain HTTP for clients other than proxmoxer, whose https
backend has no plain-HTTP mode.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import ipaddress
import json
import random
import re
import secrets
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from hypervisors.base import ConnectionConfig, HypervisorKind

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "data" / "pve-api-schema-9.1.3.json"
API_PREFIX = "/api2/json"
PVE_VERSION = "9.1.3"

# ============================================================================================
# The schema: path lookup and parameter verification (what PVE::JSONSchema does on a node)
# ============================================================================================

# PVE numbers some options (net0, scsi3...). The schema names them "net[n]"; the bounds are PVE's
# own (PVE::QemuServer MAX_NETS and friends), so "net32" is refused as a real node would.
_INDEXED_MAXIMA: Mapping[str, int] = {
    "net": 31,
    "ipconfig": 31,
    "scsi": 30,
    "virtio": 15,
    "sata": 5,
    "ide": 3,
    "unused": 255,
    "serial": 3,
    "parallel": 2,
    "usb": 13,
    "hostpci": 15,
    "numa": 7,
    "mp": 255,
    "dev": 255,
    "link": 7,
    "virtiofs": 9,
    "acmedomain": 4,
}

_PERL_INLINE = re.compile(r"\(\?\^([a-z]*):")


def _python_regex(perl: str) -> re.Pattern[str]:
    """Compile a schema pattern. PVE stores Perl's stringified ``qr//`` (``(?^i:...)``) and
    always anchors the whole value."""
    converted = _PERL_INLINE.sub(lambda m: f"(?{m.group(1)}:" if m.group(1) else "(?:", perl)
    return re.compile(f"(?:{converted})")


@functools.lru_cache(maxsize=512)
def _compiled(perl: str) -> re.Pattern[str]:
    return _python_regex(perl)


@dataclass
class _PathNode:
    literal: dict[str, _PathNode] = field(default_factory=dict)
    param: tuple[str, _PathNode] | None = None
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Endpoint:
    """One schema path and the methods its ``info`` declares."""

    template: str
    methods: Mapping[str, Mapping[str, Any]]


class ApiSchema:
    """The PVE API tree, indexed for path-template lookup."""

    def __init__(self, tree: list[Mapping[str, Any]]) -> None:
        self._root = _PathNode()
        for node in self._walk(tree):
            self._insert(node)

    @staticmethod
    def _walk(nodes: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for node in nodes:
            yield node
            yield from ApiSchema._walk(node.get("children", []))

    def _insert(self, node: Mapping[str, Any]) -> None:
        cursor = self._root
        for segment in node["path"].strip("/").split("/"):
            if segment.startswith("{") and segment.endswith("}"):
                name = segment[1:-1]
                if cursor.param is None:
                    cursor.param = (name, _PathNode())
                cursor = cursor.param[1]
            else:
                cursor = cursor.literal.setdefault(segment, _PathNode())
        cursor.schema = node

    def match(self, path: str) -> tuple[Endpoint, dict[str, str]] | None:
        """Find the endpoint for a concrete path (without the /api2/json prefix)."""
        segments = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
        found = self._match(self._root, segments, {})
        if found is None:
            return None
        node, params = found
        return Endpoint(template=node["path"], methods=node.get("info", {})), params

    def _match(
        self, cursor: _PathNode, segments: list[str], params: dict[str, str]
    ) -> tuple[Mapping[str, Any], dict[str, str]] | None:
        if not segments:
            return (cursor.schema, params) if cursor.schema is not None else None
        head, rest = segments[0], segments[1:]
        # A literal segment wins over a template one (".../status/current" is not a {vmid}).
        if head in cursor.literal:
            found = self._match(cursor.literal[head], rest, params)
            if found is not None:
                return found
        if cursor.param is not None and head:
            name, child = cursor.param
            return self._match(child, rest, {**params, name: head})
        return None


@functools.lru_cache(maxsize=1)
def load_schema(path: Path = SCHEMA_PATH) -> ApiSchema:
    return ApiSchema(json.loads(path.read_text(encoding="utf-8")))


def lookup_property(properties: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    """The schema of parameter ``name``, resolving indexed names such as ``net3`` → ``net[n]``."""
    if name in properties:
        return properties[name]
    match = re.fullmatch(r"([a-z]+)(\d+)", name)
    if match is None:
        return None
    prefix, index = match.group(1), int(match.group(2))
    schema = properties.get(f"{prefix}[n]")
    if schema is None or index > _INDEXED_MAXIMA.get(prefix, 255):
        return None
    return schema


_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off"}
_NODE_NAME = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?")
_DNS_NAME = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?\.)*[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?"
)
_CONFIG_ID = re.compile(r"[a-z][a-z0-9_-]+", re.IGNORECASE)
_STORAGE_ID = re.compile(r"[a-z][a-z0-9\-_.]*[a-z0-9]", re.IGNORECASE)
_POOL_ID = re.compile(r"[A-Za-z0-9_\-]+")
_BRIDGE_ID = re.compile(r"[-_.\w]+")
_UNICAST_MAC = re.compile(r"[a-f0-9][02468ace](?::[a-f0-9]{2}){5}", re.IGNORECASE)
_TAG = re.compile(r"[a-z0-9_][a-z0-9_\-+.]*", re.IGNORECASE)
_DISK_SIZE = re.compile(r"\d+(?:\.\d+)?[KMGT]?")
_PORT_ITEM = re.compile(r"(?:\d+(?::\d+)?|[a-z][a-z0-9\-]*)", re.IGNORECASE)
_PROTOCOL = re.compile(r"[a-z0-9\-]+", re.IGNORECASE)
_VOLUME = re.compile(r"(?:[a-z][a-z0-9\-_.]*[a-z0-9]:\S+|/\S+|none|cdrom)", re.IGNORECASE)
_LIST_SPLIT = re.compile(r"[\s,;]+")
_NOT_IN_SCHEMA = "property is not defined in schema and the schema does not allow additional properties"


def _is_ip(value: str, version: int | None = None) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return version is None or address.version == version


def _is_cidr(value: str, version: int | None = None) -> bool:
    if "/" not in value:
        return False
    try:
        interface = ipaddress.ip_interface(value)
    except ValueError:
        return False
    return version is None or interface.version == version


def _check_ipconfig(value: str) -> str | None:
    allowed: dict[str, Callable[[str], bool]] = {
        "ip": lambda v: v == "dhcp" or _is_cidr(v, 4),
        "gw": lambda v: _is_ip(v, 4),
        "ip6": lambda v: v in ("dhcp", "auto") or _is_cidr(v, 6),
        "gw6": lambda v: _is_ip(v, 6),
    }
    for part in filter(None, value.split(",")):
        key, sep, item = part.partition("=")
        if not sep or key not in allowed:
            return f"invalid format - unknown key '{key}'"
        if not allowed[key](item):
            return f"invalid format - {key}: invalid address '{item}'"
    return None


def _check_ports(value: str) -> bool:
    for item in value.split(","):
        if not _PORT_ITEM.fullmatch(item):
            return False
        for number in re.findall(r"\d+", item):
            if int(number) > 65535:
                return False
    return True


# Named string formats of PVE::JSONSchema (and the qemu-server / firewall plugins) that the
# endpoints we serve use. Formats not listed here are accepted after the type check: the brief is
# "type, enum, range and pattern at least", and an over-strict double would be as wrong as a lax one.
_FORMATS: Mapping[str, Callable[[str], str | None]] = {
    "pve-node": lambda v: None if _NODE_NAME.fullmatch(v) else "value does not look like a valid node name",
    "pve-configid": lambda v: None if _CONFIG_ID.fullmatch(v) else "invalid configuration ID",
    "pve-storage-id": lambda v: None if _STORAGE_ID.fullmatch(v) else "storage ID",
    "pve-poolid": lambda v: None if _POOL_ID.fullmatch(v) else "invalid pool ID",
    "pve-bridge-id": lambda v: None if _BRIDGE_ID.fullmatch(v) else "invalid bridge ID",
    "dns-name": lambda v: None if _DNS_NAME.fullmatch(v) else "value does not look like a valid DNS name",
    "mac-addr": lambda v: (
        None if _UNICAST_MAC.fullmatch(v) else "value does not look like a valid unicast MAC"
    ),
    "pve-tag": lambda v: None if _TAG.fullmatch(v) else "invalid tag",
    "disk-size": lambda v: None if _DISK_SIZE.fullmatch(v) else "unable to parse size",
    "pve-qm-ipconfig": _check_ipconfig,
    "ip": lambda v: None if _is_ip(v) else "value does not look like a valid IP address",
    "ipv4": lambda v: None if _is_ip(v, 4) else "value does not look like a valid IPv4 address",
    "ipv6": lambda v: None if _is_ip(v, 6) else "value does not look like a valid IPv6 address",
    "address": lambda v: None if _is_ip(v) or _DNS_NAME.fullmatch(v) else "invalid address",
    "CIDR": lambda v: None if _is_cidr(v) else "value does not look like a valid CIDR network",
    "CIDRv4": lambda v: None if _is_cidr(v, 4) else "value does not look like a valid IPv4 CIDR",
    "CIDRv6": lambda v: None if _is_cidr(v, 6) else "value does not look like a valid IPv6 CIDR",
    "pve-fw-dport-spec": lambda v: None if _check_ports(v) else "invalid port specification",
    "pve-fw-sport-spec": lambda v: None if _check_ports(v) else "invalid port specification",
    "pve-fw-protocol-spec": lambda v: None if _PROTOCOL.fullmatch(v) else "invalid protocol",
    "pve-fw-addr-spec": lambda v: None if v and not any(c.isspace() for c in v) else "invalid address spec",
    "pve-volume-id": lambda v: None if _VOLUME.fullmatch(v) else "unable to parse volume ID",
    "pve-volume-id-or-qm-path": lambda v: None if _VOLUME.fullmatch(v) else "unable to parse volume ID",
}


def _check_named_format(fmt: str, value: str) -> str | None:
    if fmt in _FORMATS:
        return _FORMATS[fmt](value)
    # "pve-configid-list", "address-list", "pve-tag-list": PVE splits on separators and checks items.
    if fmt.endswith("-list"):
        item_format = fmt.removesuffix("-list")
        if item_format in _FORMATS:
            for item in filter(None, _LIST_SPLIT.split(value)):
                error = _FORMATS[item_format](item)
                if error:
                    return f"invalid format - {error} '{item}'"
    return None


def check_value(schema: Mapping[str, Any], value: str) -> str | None:
    """Verify one (string-encoded) value against a property schema; None when it passes.

    The messages are PVE::JSONSchema's, so an error body looks like a real node's.
    """
    kind = schema.get("type", "string")
    well_typed = {
        "boolean": lambda: value.lower() in _BOOL_TRUE | _BOOL_FALSE,
        "integer": lambda: re.fullmatch(r"[+-]?\d+", value) is not None,
        "number": lambda: re.fullmatch(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", value) is not None,
    }
    if kind in well_typed and not well_typed[kind]():
        return f"type check ('{kind}') failed - got '{value}'"
    if kind in ("integer", "number"):
        number = float(value)
        if "minimum" in schema and number < float(schema["minimum"]):
            return f"value must have a minimum value of {schema['minimum']}"
        if "maximum" in schema and number > float(schema["maximum"]):
            return f"value must have a maximum value of {schema['maximum']}"
    if "enum" in schema and value not in [str(e) for e in schema["enum"]]:
        listed = ", ".join(map(str, schema["enum"]))
        return f"value '{value}' does not have a value in the enumeration '{listed}'"
    if kind == "string":
        if "maxLength" in schema and len(value) > int(schema["maxLength"]):
            return f"value may only be {schema['maxLength']} characters long"
        if "minLength" in schema and len(value) < int(schema["minLength"]):
            return f"value must be at least {schema['minLength']} characters long"
        if "pattern" in schema and not _compiled(schema["pattern"]).fullmatch(value):
            return "value does not match the regex pattern"
        fmt = schema.get("format")
        if isinstance(fmt, dict):
            return check_property_string(fmt, value)
        if isinstance(fmt, str):
            return _check_named_format(fmt, value)
    return None


def parse_property_string(fmt: Mapping[str, Any], value: str) -> dict[str, str]:
    """Split ``virtio=BC:..,bridge=vmbr0,link_down=1`` into keys, resolving PVE's key aliases
    (``virtio=<mac>`` means ``model=virtio,macaddr=<mac>``). Raises ValueError on unknown keys."""
    result: dict[str, str] = {}
    default_key = next((k for k, v in fmt.items() if isinstance(v, dict) and v.get("default_key")), None)
    for part in value.split(","):
        if part == "":
            continue
        key, sep, item = part.partition("=")
        if not sep:
            if default_key is None or default_key in result:
                raise ValueError(f"value without key, but schema does not define a default key: '{part}'")
            result[default_key] = part
            continue
        spec = fmt.get(key)
        if spec is None:
            raise ValueError(f"{key}: {_NOT_IN_SCHEMA}")
        if "keyAlias" in spec:
            result[spec["keyAlias"]] = key
            result[spec["alias"]] = item
        elif "alias" in spec:
            result[spec["alias"]] = item
        else:
            result[key] = item
    return result


def check_property_string(fmt: Mapping[str, Any], value: str) -> str | None:
    try:
        parsed = parse_property_string(fmt, value)
    except ValueError as exc:
        return f"invalid format - format error\n{exc}"
    for key, spec in fmt.items():
        if "alias" in spec:
            continue
        if key not in parsed:
            if not spec.get("optional"):
                return f"invalid format - format error\n{key}: property is missing and it is not optional"
            continue
        error = check_value(spec, parsed[key])
        if error:
            return f"invalid format - format error\n{key}: {error}"
    return None


def verify_parameters(parameters: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, str]:
    """Check a request's parameters (path ones included) the way PVE::JSONSchema::validate does.

    Returns ``{param: reason}``; empty when the request may proceed.
    """
    properties: Mapping[str, Any] = parameters.get("properties", {})
    additional = parameters.get("additionalProperties", 1)
    errors: dict[str, str] = {}
    for name, value in values.items():
        schema = lookup_property(properties, name)
        if schema is None:
            if not additional:
                errors[name] = (
                    "property is not defined in schema and the schema does not allow additional properties"
                )
            continue
        error = check_value(schema, value)
        if error:
            errors[name] = error
            continue
        requires = schema.get("requires")
        if isinstance(requires, str) and requires not in values:
            errors[requires] = f"missing property - '{name}' requires this property"
    for name, schema in properties.items():
        if "[n]" in name or schema.get("optional"):
            continue
        if name not in values:
            errors[name] = "property is missing and it is not optional"
    return errors


def coerce(schema: Mapping[str, Any] | None, value: str) -> Any:
    """Store a verified value with the JSON type a node returns it with (integers as numbers)."""
    kind = (schema or {}).get("type", "string")
    if kind == "integer":
        return int(value)
    if kind == "number":
        number = float(value)
        return int(number) if number.is_integer() else number
    if kind == "boolean":
        return 1 if value.lower() in _BOOL_TRUE else 0
    return value


# ============================================================================================
# TLS material: a throwaway CA and a server certificate for 127.0.0.1 / localhost
# ============================================================================================


@dataclass(frozen=True)
class TLSFiles:
    ca_file: str  # trust anchor a client passes as ``verify=``
    cert_file: str
    key_file: str


def make_tls_files(directory: Path) -> TLSFiles:
    """A CA plus a leaf signed by it, so verification against ``ca_file`` succeeds under strict
    X.509 checking (a bare self-signed leaf is refused by some OpenSSL builds)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vmportal test Proxmox CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pve-double.localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TLSFiles(ca_file=str(ca_path), cert_file=str(cert_path), key_file=str(key_path))


# ============================================================================================
# State
# ============================================================================================


class ApiError(Exception):
    """An answer other than 200, as a PVE node phrases it (reason in the status line)."""

    def __init__(self, status: int, reason: str, errors: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.errors = dict(errors or {})


@dataclass
class DoubleVM:
    vmid: int
    node: str
    config: dict[str, Any]
    status: str = "stopped"  # running | stopped | paused
    firewall_options: dict[str, Any] = field(default_factory=dict)
    firewall_rules: list[dict[str, Any]] = field(default_factory=list)
    clone_failure: str | None = None  # test hook: every clone of this VM/template fails with this text
    cipassword: str | None = None  # what the portal set; the API only ever shows "**********"

    @property
    def is_template(self) -> bool:
        return bool(self.config.get("template"))

    @property
    def digest(self) -> str:
        return hashlib.sha1(
            json.dumps(self.config, sort_keys=True).encode(), usedforsecurity=False
        ).hexdigest()


@dataclass
class DoubleTask:
    upid: str
    node: str
    type: str
    id: str
    user: str
    pid: int
    pstart: int
    starttime: int
    due: float
    failure: str | None = None
    on_success: Callable[[], None] | None = None
    on_failure: Callable[[], None] | None = None
    status: str = "running"
    exitstatus: str | None = None
    endtime: int | None = None


class TaskError(Exception):
    """Raised by a task's effect to end it with this exit status instead of OK."""


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the double received and answered it."""

    method: str
    path: str  # as sent, /api2/json included
    template: str | None  # the schema path it matched, None when it matched nothing
    params: Mapping[str, str]  # query or body parameters (path parameters excluded)
    status: int
    reason: str
    errors: Mapping[str, str]
    schema_valid: bool  # the path, method and every parameter passed the schema

    @property
    def rejected(self) -> bool:
        """Refused for its form rather than its meaning: what a schema-correct client never sees."""
        return not self.schema_valid or self.status in (400, 501)


def _mac() -> str:
    # BC:24:11 is the prefix PVE generates MACs under; the rest is random, unicast by construction.
    return "BC:24:11:" + ":".join(f"{random.randint(0, 255):02X}" for _ in range(3))


def _size_to_bytes(size: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", size)
    if match is None:
        raise ValueError(size)
    unit = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[match.group(2)]
    return int(float(match.group(1)) * unit)


def _bytes_to_size(count: int) -> str:
    for unit, factor in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if count % factor == 0:
            return f"{count // factor}{unit}"
    return str(count)


_DISK_KEY = re.compile(r"(?:scsi|virtio|sata|ide)\d+")


def disk_size_bytes(value: str) -> int | None:
    """Size of a disk property string, None for CD-ROMs and cloud-init drives."""
    if "media=cdrom" in value or "cloudinit" in value.split(",")[0]:
        return None
    match = re.search(r"(?:^|,)size=([^,]+)", value)
    return _size_to_bytes(match.group(1)) if match else 0


def _set_prop(value: str, key: str, item: str | None) -> str:
    """Replace (or drop, when ``item`` is None) one key of a property string, keeping the rest."""
    parts = [p for p in value.split(",") if p and not p.startswith(f"{key}=")]
    if item is not None:
        parts.append(f"{key}={item}")
    return ",".join(parts)


@dataclass
class _Call:
    method: str
    template: str
    params: dict[str, str]  # body/query and path parameters, verified
    user: str


Handler = Callable[["ProxmoxDouble", _Call], Any]
_ROUTES: dict[tuple[str, str], Handler] = {}


def _route(method: str, template: str) -> Callable[[Handler], Handler]:
    def decorate(handler: Handler) -> Handler:
        _ROUTES[(method, template)] = handler
        return handler

    return decorate


# ============================================================================================
# The double
# ============================================================================================


class ProxmoxDouble:
    """A Proxmox VE cluster of two nodes (``pve1``, ``pve2``) behind a real HTTPS endpoint.

    Seeded inventory (see :meth:`reset`): template 9000 ``debian12-tmpl`` on pve1 (scsi0 10 GiB,
    cloud-init drive, net0 on vmbr0), template 9001 ``rocky9-tmpl`` on pve2 (virtio0 20 GiB), and
    VM 100 ``legacy-web`` on pve1, running, with two NICs and two disks, not made by the portal.
    """

    token_user = "vmportal@pve"
    token_name = "portal"
    password_user = "root@pam"

    def __init__(self, *, tls: bool = True, task_delay: float = 0.05) -> None:
        self.schema = load_schema()
        self.tls = tls
        self.task_delay = task_delay
        self.token_secret = str(_uuid())
        self.password = "double-root-password"  # ticket login; never a real secret
        self._lock = threading.RLock()
        self._tmp = tempfile.TemporaryDirectory(prefix="pve-double-")
        self.tls_files: TLSFiles | None = make_tls_files(Path(self._tmp.name)) if tls else None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._connections: set[socket.socket] = set()
        self.reset()

    # -- connection facts ---------------------------------------------------------------------

    @property
    def token_id(self) -> str:
        return f"{self.token_user}!{self.token_name}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """Base URL, without /api2/json, as an operator would enter it."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._port}"

    @property
    def ca_file(self) -> str | None:
        return self.tls_files.ca_file if self.tls_files else None

    def connection_config(self, **overrides: Any) -> ConnectionConfig:
        """A ConnectionConfig that reaches this double with the right token and trust."""
        values: dict[str, Any] = {
            "kind": HypervisorKind.PROXMOX,
            "url": self.url,
            "token_id": self.token_id,
            "secret": self.token_secret,
            "verify_tls": True,
            "ca_file": self.ca_file,
            "timeout": 5.0,
            "task_timeout": 20.0,
            "defaults": {"node": "pve1", "storage": "local-lvm", "bridge": "vmbr0"},
        }
        values.update(overrides)
        return ConnectionConfig(**values)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Listen (again) on the same port, so a config made before :meth:`stop` works after."""
        if self._server is not None:
            return
        context = None
        if self.tls_files is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls_files.cert_file, self.tls_files.key_file)
        self._server = _Server(("127.0.0.1", self._port), _RequestHandler, self, context)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            # A short poll interval keeps stop() (and so every "node down" test) quick.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="pve-double",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and drop open keep-alive connections: the node is 'down'."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    @property
    def running(self) -> bool:
        return self._server is not None

    def __enter__(self) -> ProxmoxDouble:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state and test hooks -----------------------------------------------------------------

    def reset(self) -> None:
        """Forget every VM, task, hook and logged request; seed the standard inventory."""
        with self._lock:
            self.nodes: dict[str, dict[str, Any]] = {
                "pve1": {"status": "online", "maxcpu": 32, "maxmem": 256 * 1024**3},
                "pve2": {"status": "online", "maxcpu": 32, "maxmem": 256 * 1024**3},
            }
            # Free GiB per storage and node. "nearly-full" exists so a clone can fail inside its
            # task for a real reason (no space), the way an LVM thin pool refuses on a node.
            self.storages: dict[str, dict[str, int]] = {
                node: {"local": 100, "local-lvm": 10240, "nearly-full": 4} for node in ("pve1", "pve2")
            }
            self.vms: dict[int, DoubleVM] = {}
            self.tasks: dict[str, DoubleTask] = {}
            self.firewall_groups: dict[str, str] = {"webservers": "HTTP(S) for web servers"}
            # Datacenter firewall switch: when off, no VM rule is ever applied (hook: set enable 0).
            self.cluster_firewall: dict[str, Any] = {
                "enable": 1,
                "policy_in": "ACCEPT",
                "policy_out": "ACCEPT",
            }
            self.requests: list[LoggedRequest] = []
            self._fail_next: dict[str, list[str]] = {}
            self._tickets: dict[str, tuple[str, str]] = {}  # ticket -> (user, csrf token)
            self._pid = 0x10000
            self.add_vm(
                "debian12-tmpl",
                vmid=9000,
                node="pve1",
                template=True,
                cores=2,
                memory=2048,
                disks={"scsi0": 10},
                nets={"net0": "virtio=BC:24:11:90:00:01,bridge=vmbr0,firewall=1"},
                extra={
                    "ide2": "local-lvm:vm-9000-cloudinit,media=cdrom",
                    "ostype": "l26",
                    "scsihw": "virtio-scsi-single",
                    "boot": "order=scsi0;ide2;net0",
                    "agent": "1",
                },
                description="Debian 12 cloud image",
            )
            self.add_vm(
                "rocky9-tmpl",
                vmid=9001,
                node="pve2",
                template=True,
                cores=1,
                memory=1024,
                disks={"virtio0": 20},
                nets={"net0": "e1000=BC:24:11:90:01:01,bridge=vmbr0"},
                extra={"ide2": "local-lvm:vm-9001-cloudinit,media=cdrom", "ostype": "l26"},
            )
            self.add_vm(
                "legacy-web",
                vmid=100,
                node="pve1",
                cores=4,
                memory=8192,
                disks={"scsi0": 32, "scsi1": 100},
                nets={
                    "net0": "virtio=BC:24:11:00:01:00,bridge=vmbr0,firewall=1",
                    "net1": "virtio=BC:24:11:00:01:01,bridge=vmbr1,tag=20,mtu=1400",
                },
                extra={"ipconfig0": "ip=10.20.0.10/24,gw=10.20.0.1", "ostype": "l26"},
                status="running",
            )

    def add_vm(
        self,
        name: str,
        *,
        vmid: int | None = None,
        node: str = "pve1",
        template: bool = False,
        cores: int = 1,
        memory: int = 1024,
        disks: Mapping[str, int] | None = None,
        nets: Mapping[str, str] | None = None,
        description: str | None = None,
        status: str = "stopped",
        extra: Mapping[str, str] | None = None,
        clone_failure: str | None = None,
    ) -> int:
        """Create a VM (or template) behind the portal's back. ``disks`` maps keys to GiB;
        ``nets`` maps netN to the raw property string. Returns the vmid."""
        with self._lock:
            vmid = vmid if vmid is not None else self._next_vmid()
            if vmid in self.vms:
                raise ValueError(f"VM {vmid} already exists")
            prefix = "base" if template else "vm"
            config: dict[str, Any] = {"name": name, "cores": cores, "sockets": 1, "memory": str(memory)}
            for index, (key, gib) in enumerate((disks or {"scsi0": 8}).items()):
                config[key] = f"local-lvm:{prefix}-{vmid}-disk-{index},size={gib}G"
            for key, value in (nets or {"net0": f"virtio={_mac()},bridge=vmbr0"}).items():
                config[key] = value
            if description is not None:
                config["description"] = description
            if template:
                config["template"] = 1
            config.update(extra or {})
            config["vmgenid"] = str(_uuid())
            self.vms[vmid] = DoubleVM(
                vmid=vmid,
                node=node,
                config=self._typed(config),
                status="stopped" if template else status,
                clone_failure=clone_failure,
            )
            return vmid

    def set_power_state(self, vmid: int, status: str) -> None:
        """Power a VM on/off/paused behind the portal's back (``running``/``stopped``/``paused``)."""
        if status not in ("running", "stopped", "paused"):
            raise ValueError(status)
        with self._lock:
            self.vms[vmid].status = status

    def fail_next_task(self, task_type: str, message: str = "command failed: exit code 1") -> None:
        """The next task of this PVE type (``qmclone``, ``qmstart``, ``qmstop``, ``qmshutdown``,
        ``qmreboot``, ``qmreset``, ``qmdestroy``, ``qmconfig``, ``resize``) ends with
        ``exitstatus=message`` instead of ``OK``."""
        with self._lock:
            self._fail_next.setdefault(task_type, []).append(message)

    def fail_clones_of(self, vmid: int, message: str = "clone failed: storage 'local-lvm' is full") -> None:
        """Every clone of this template fails (PVE leaves the half-made VM behind, unlocked)."""
        with self._lock:
            self.vms[vmid].clone_failure = message

    def vm(self, vmid: int) -> DoubleVM:
        with self._lock:
            return self.vms[vmid]

    def vm_by_name(self, name: str) -> DoubleVM | None:
        with self._lock:
            return next((vm for vm in self.vms.values() if vm.config.get("name") == name), None)

    def web_blocked(self, vmid: int) -> bool:
        """Whether pve-firewall would actually drop inbound TCP 80 and 443 for this VM: firewall
        enabled, an enabled DROP/REJECT rule per port, and every NIC filtered (firewall=1)."""
        with self._lock:
            vm = self.vms[vmid]
            if not self.cluster_firewall.get("enable") or not vm.firewall_options.get("enable"):
                return False
            nets = [v for k, v in vm.config.items() if re.fullmatch(r"net\d+", k)]
            if not nets or not all("firewall=1" in n.split(",") for n in nets):
                return False
            dropped: set[str] = set()
            for rule in vm.firewall_rules:
                if (
                    rule.get("enable")
                    and rule.get("type") == "in"
                    and rule.get("action") in ("DROP", "REJECT")
                    and rule.get("proto") == "tcp"
                ):
                    dropped.update(str(rule.get("dport", "")).split(","))
            return {"80", "443"} <= dropped

    def clear_log(self) -> None:
        with self._lock:
            self.requests = []

    def rejected_requests(self) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.requests if r.rejected]

    def assert_all_valid(self) -> None:
        """Fail when anything was refused as malformed (400 / 501 / schema mismatch)."""
        bad = self.rejected_requests()
        assert not bad, "requests the schema refused:\n" + "\n".join(
            f"  {r.method} {r.path} {dict(r.params)} -> {r.status} {r.reason} {dict(r.errors)}" for r in bad
        )

    def task_types(self) -> list[str]:
        with self._lock:
            return [t.type for t in self.tasks.values()]

    # -- request pipeline ---------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, query: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, str, dict[str, Any]]:
        """Answer one HTTP request: (status, reason, JSON body)."""
        params = self._parse_params(method, query, body, headers.get("content-type", ""))
        template: str | None = None
        valid = False
        status, reason = 200, "OK"
        payload: dict[str, Any] = {"data": None}
        with self._lock:
            self._advance_tasks()
            try:
                if not raw_path.startswith(API_PREFIX + "/") and raw_path != API_PREFIX:
                    raise ApiError(501, f"Method '{method} {raw_path}' not implemented")
                path = raw_path[len(API_PREFIX) :] or "/"
                match = self.schema.match(path)
                endpoint = match[0] if match else None
                info = endpoint.methods.get(method) if endpoint else None
                template = endpoint.template if endpoint else None
                public = template == "/access/ticket"
                user = None if public else self._authenticate(method, headers)
                if match is None or info is None:
                    raise ApiError(501, f"Method '{method} {path}' not implemented")
                assert endpoint is not None
                path_params = match[1]
                values = {**params, **path_params}  # path parameters win, as in PVE::RESTHandler
                errors = verify_parameters(info.get("parameters", {}), values)
                if errors:
                    raise ApiError(400, "Parameter verification failed.", errors)
                valid = True
                handler = _ROUTES.get((method, endpoint.template))
                if handler is None:
                    # Schema-correct but outside what the double models: say so loudly.
                    raise ApiError(
                        501, f"Method '{method} {endpoint.template}' not implemented by the double"
                    )
                payload = {"data": handler(self, _Call(method, endpoint.template, values, user or ""))}
            except ApiError as exc:
                status, reason = exc.status, exc.reason
                payload = {"data": None}
                if exc.errors:
                    payload["errors"] = exc.errors
            self.requests.append(
                LoggedRequest(
                    method=method,
                    path=raw_path,
                    template=template,
                    params=params,
                    status=status,
                    reason=reason,
                    errors=payload.get("errors", {}),
                    schema_valid=valid,
                )
            )
        return status, reason, payload

    @staticmethod
    def _parse_params(method: str, query: str, body: bytes, content_type: str) -> dict[str, str]:
        params = dict(parse_qsl(query, keep_blank_values=True))
        if method in ("POST", "PUT") and body:
            if content_type.startswith("application/json"):
                decoded = json.loads(body)
                for key, value in decoded.items():
                    params[key] = str(int(value)) if isinstance(value, bool) else str(value)
            else:
                params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        return params

    def _authenticate(self, method: str, headers: Mapping[str, str]) -> str:
        authorization = headers.get("authorization", "")
        if authorization:
            match = re.fullmatch(r"PVEAPIToken=([^!]+)!([^=]+)=(.+)", authorization)
            if match is None:
                raise ApiError(401, "authentication failure")
            user, token, secret = match.groups()
            if (user, token) != (self.token_user, self.token_name):
                raise ApiError(401, "authentication failure")
            if not secrets.compare_digest(secret, self.token_secret):
                raise ApiError(401, "invalid token value!")
            return f"{user}!{token}"
        cookie = headers.get("cookie", "")
        match = re.search(r"PVEAuthCookie=([^;]+)", cookie)
        if match is None:
            raise ApiError(401, "No ticket")
        session = self._tickets.get(unquote(match.group(1)))
        if session is None:
            raise ApiError(401, "invalid ticket")
        if method != "GET" and headers.get("csrfpreventiontoken") != session[1]:
            raise ApiError(401, "Permission check failed (invalid csrf token)")
        return session[0]

    # -- tasks --------------------------------------------------------------------------------

    def _start_task(
        self,
        node: str,
        task_type: str,
        task_id: str,
        user: str,
        on_success: Callable[[], None] | None = None,
        on_failure: Callable[[], None] | None = None,
        failure: str | None = None,
    ) -> str:
        self._pid += 1
        starttime = int(time.time())
        pstart = self._pid * 7
        upid = f"UPID:{node}:{self._pid:08X}:{pstart:08X}:{starttime:08X}:{task_type}:{task_id}:{user}:"
        queued = self._fail_next.get(task_type)
        if failure is None and queued:
            failure = queued.pop(0)
        self.tasks[upid] = DoubleTask(
            upid=upid,
            node=node,
            type=task_type,
            id=task_id,
            user=user,
            pid=self._pid,
            pstart=pstart,
            starttime=starttime,
            due=time.monotonic() + self.task_delay,
            failure=failure,
            on_success=on_success,
            on_failure=on_failure,
        )
        if self.task_delay <= 0:
            self._advance_tasks()
        return upid

    def _advance_tasks(self) -> None:
        now = time.monotonic()
        for task in self.tasks.values():
            if task.status != "running" or task.due > now:
                continue
            exitstatus = "OK"
            if task.failure is not None:
                exitstatus = task.failure
                if task.on_failure:
                    task.on_failure()
            elif task.on_success:
                try:
                    task.on_success()
                except TaskError as exc:
                    exitstatus = str(exc)
            task.status, task.exitstatus, task.endtime = "stopped", exitstatus, int(time.time())

    # -- helpers for handlers -----------------------------------------------------------------

    def _node(self, call: _Call) -> str:
        node = call.params["node"]
        if node not in self.nodes:
            raise ApiError(500, f"hostname lookup '{node}' failed - failed to get address info for: {node}")
        return node

    def _vm(self, call: _Call) -> DoubleVM:
        node = self._node(call)
        vmid = int(call.params["vmid"])
        vm = self.vms.get(vmid)
        if vm is None or vm.node != node:
            raise ApiError(500, f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist")
        return vm

    @staticmethod
    def _unlocked(vm: DoubleVM) -> None:
        if vm.config.get("lock"):
            raise ApiError(500, f"VM is locked ({vm.config['lock']})")

    def _next_vmid(self) -> int:
        vmid = 100
        while vmid in self.vms:
            vmid += 1
        return vmid

    def _config_schema(self) -> Mapping[str, Any]:
        found = self.schema.match("/nodes/pve1/qemu/100/config")
        assert found is not None
        return found[0].methods["PUT"]["parameters"]["properties"]

    def _typed(self, config: Mapping[str, Any]) -> dict[str, Any]:
        properties = self._config_schema()
        return {k: coerce(lookup_property(properties, k), str(v)) for k, v in config.items()}

    def _apply_config(self, vm: DoubleVM, params: Mapping[str, str]) -> None:
        properties = self._config_schema()
        if "digest" in params and params["digest"] != vm.digest:
            raise ApiError(500, "detected modified configuration - file changed by other user? Try again.")
        control = {"node", "vmid", "digest", "delete", "revert", "skiplock", "force", "background_delay"}
        for key in filter(None, _LIST_SPLIT.split(params.get("delete", ""))):
            vm.config.pop(key, None)
        for key, value in params.items():
            if key in control:
                continue
            if key == "cipassword":
                vm.cipassword = value
                value = "**********"  # PVE keeps a hash and never returns the password
            vm.config[key] = coerce(lookup_property(properties, key), value)

    def _resource(self, vm: DoubleVM) -> dict[str, Any]:
        config = vm.config
        boot_disk = next((v for k, v in sorted(config.items()) if _DISK_KEY.fullmatch(k)), "")
        entry: dict[str, Any] = {
            "id": f"qemu/{vm.vmid}",
            "type": "qemu",
            "node": vm.node,
            "vmid": vm.vmid,
            "status": "stopped" if vm.status == "stopped" else "running",
            "template": 1 if vm.is_template else 0,
            "maxcpu": int(config.get("cores", 1)) * int(config.get("sockets", 1)),
            "maxmem": int(str(config.get("memory", "512")).removeprefix("current=")) * 1024**2,
            "maxdisk": disk_size_bytes(str(boot_disk)) or 0,
            "cpu": 0.01 if vm.status == "running" else 0,
            "mem": 0,
            "disk": 0,
            "uptime": 3600 if vm.status == "running" else 0,
            "netin": 0,
            "netout": 0,
            "diskread": 0,
            "diskwrite": 0,
        }
        if "name" in config:
            entry["name"] = config["name"]
        for optional in ("lock", "tags", "pool"):
            if config.get(optional):
                entry[optional] = config[optional]
        return entry


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


# ============================================================================================
# Endpoints
# ============================================================================================


@_route("POST", "/access/ticket")
def _ticket(double: ProxmoxDouble, call: _Call) -> Any:
    username = call.params["username"]
    if "@" not in username and "realm" in call.params:
        username = f"{username}@{call.params['realm']}"
    if username != double.password_user or not secrets.compare_digest(
        call.params["password"], double.password
    ):
        raise ApiError(401, "authentication failure")
    ticket = f"PVE:{username}:{int(time.time()):08X}::{secrets.token_urlsafe(32)}"
    csrf = f"{int(time.time()):08X}:{secrets.token_urlsafe(16)}"
    double._tickets[ticket] = (username, csrf)
    return {"username": username, "ticket": ticket, "CSRFPreventionToken": csrf, "clustername": "nic-campus"}


@_route("GET", "/version")
def _version(double: ProxmoxDouble, call: _Call) -> Any:
    return {"version": PVE_VERSION, "release": "9.1", "repoid": "5a1c2b3d"}


@_route("GET", "/nodes")
def _nodes(double: ProxmoxDouble, call: _Call) -> Any:
    return [
        {"node": name, "id": f"node/{name}", "type": "node", **info, "level": ""}
        for name, info in sorted(double.nodes.items())
    ]


@_route("GET", "/cluster/resources")
def _resources(double: ProxmoxDouble, call: _Call) -> Any:
    wanted = call.params.get("type")
    entries: list[dict[str, Any]] = []
    if wanted in (None, "vm"):
        entries += [double._resource(vm) for vm in sorted(double.vms.values(), key=lambda v: v.vmid)]
    if wanted in (None, "node"):
        entries += [
            {"id": f"node/{n}", "type": "node", "node": n, **info} for n, info in double.nodes.items()
        ]
    if wanted in (None, "storage"):
        entries += [
            {"id": f"storage/{n}/{s}", "type": "storage", "node": n, "storage": s, "status": "available"}
            for n, names in double.storages.items()
            for s in sorted(names)
        ]
    return entries


@_route("GET", "/cluster/nextid")
def _nextid(double: ProxmoxDouble, call: _Call) -> Any:
    if "vmid" in call.params:
        vmid = int(call.params["vmid"])
        if vmid in double.vms:
            raise ApiError(400, "Parameter verification failed.", {"vmid": f"VM {vmid} already exists"})
        return str(vmid)
    return str(double._next_vmid())  # a real node answers the integer as a JSON string


@_route("GET", "/cluster/tasks")
def _cluster_tasks(double: ProxmoxDouble, call: _Call) -> Any:
    listed = []
    for task in double.tasks.values():
        entry = {
            k: getattr(task, k) for k in ("upid", "node", "type", "id", "user", "pid", "pstart", "starttime")
        }
        if task.status == "stopped":
            entry["endtime"] = task.endtime
            entry["status"] = task.exitstatus
        listed.append(entry)
    return listed


@_route("GET", "/cluster/firewall/options")
def _cluster_fw_options(double: ProxmoxDouble, call: _Call) -> Any:
    return dict(double.cluster_firewall)


@_route("GET", "/cluster/firewall/groups")
def _groups(double: ProxmoxDouble, call: _Call) -> Any:
    return [{"group": g, "comment": c, "digest": "0" * 40} for g, c in sorted(double.firewall_groups.items())]


@_route("GET", "/nodes/{node}/tasks/{upid}/status")
def _task_status(double: ProxmoxDouble, call: _Call) -> Any:
    double._node(call)
    task = double.tasks.get(call.params["upid"])
    if task is None or task.node != call.params["node"]:
        raise ApiError(500, f"no such task: '{call.params['upid']}'")
    status: dict[str, Any] = {
        "upid": task.upid,
        "node": task.node,
        "pid": task.pid,
        "pstart": task.pstart,
        "starttime": task.starttime,
        "type": task.type,
        "id": task.id,
        "user": task.user,
        "status": task.status,
    }
    if task.status == "stopped":
        status["exitstatus"] = task.exitstatus
    return status


@_route("GET", "/nodes/{node}/qemu")
def _node_vms(double: ProxmoxDouble, call: _Call) -> Any:
    node = double._node(call)
    return [double._resource(vm) for vm in double.vms.values() if vm.node == node]


@_route("GET", "/nodes/{node}/qemu/{vmid}/config")
def _get_config(double: ProxmoxDouble, call: _Call) -> Any:
    vm = double._vm(call)
    return {**vm.config, "digest": vm.digest}


@_route("PUT", "/nodes/{node}/qemu/{vmid}/config")
def _put_config(double: ProxmoxDouble, call: _Call) -> Any:
    vm = double._vm(call)
    double._unlocked(vm)
    double._apply_config(vm, call.params)
    return None


@_route("POST", "/nodes/{node}/qemu/{vmid}/config")
def _post_config(double: ProxmoxDouble, call: _Call) -> Any:
    vm = double._vm(call)
    double._unlocked(vm)
    if "digest" in call.params and call.params["digest"] != vm.digest:
        raise ApiError(500, "detected modified configuration - file changed by other user? Try again.")
    params = {k: v for k, v in call.params.items() if k != "digest"}
    return double._start_task(
        vm.node, "qmconfig", str(vm.vmid), call.user, lambda: double._apply_config(vm, params)
    )


@_route("GET", "/nodes/{node}/qemu/{vmid}/status/current")
def _status_current(double: ProxmoxDouble, call: _Call) -> Any:
    vm = double._vm(call)
    resource = double._resource(vm)
    current: dict[str, Any] = {
        "vmid": vm.vmid,
        "status": resource["status"],
        "cpus": resource["maxcpu"],
        "maxmem": resource["maxmem"],
        "maxdisk": resource["maxdisk"],
        "uptime": resource["uptime"],
        "ha": {"managed": 0},
        "agent": 1 if str(vm.config.get("agent", "0")).split(",")[0] in ("1", "enabled=1") else 0,
    }
    if vm.status != "stopped":
        current["qmpstatus"] = vm.status
    for key in ("name", "lock", "tags", "template"):
        if vm.config.get(key):
            current[key] = vm.config[key]
    return current


def _power_task(task_type: str, needs_running: bool, result: str) -> Handler:
    def handler(double: ProxmoxDouble, call: _Call) -> Any:
        vm = double._vm(call)
        if task_type != "qmstop" or not call.params.get("skiplock"):
            double._unlocked(vm)
        if vm.is_template:
            raise ApiError(500, "you can't start a vm if it's a template")
        if task_type == "qmstart" and vm.status == "running":
            raise ApiError(500, f"VM {vm.vmid} already running")
        if needs_running and vm.status == "stopped":
            raise ApiError(500, f"VM {vm.vmid} not running")

        def finish() -> None:
            vm.status = result

        return double._start_task(vm.node, task_type, str(vm.vmid), call.user, finish)

    return handler


for _action, _type, _needs_running, _result in (
    ("start", "qmstart", False, "running"),
    ("stop", "qmstop", False, "stopped"),
    ("shutdown", "qmshutdown", True, "stopped"),
    ("reboot", "qmreboot", True, "running"),
    ("reset", "qmreset", True, "running"),
    ("suspend", "qmsuspend", True, "paused"),
    ("resume", "qmresume", True, "running"),
):
    _route("POST", f"/nodes/{{node}}/qemu/{{vmid}}/status/{_action}")(
        _power_task(_type, _needs_running, _result)
    )


@_route("POST", "/nodes/{node}/qemu/{vmid}/clone")
def _clone(double: ProxmoxDouble, call: _Call) -> Any:
    source = double._vm(call)
    params = call.params
    newid = int(params["newid"])
    target = params.get("target", source.node)
    if target not in double.nodes:
        raise ApiError(500, f"no such cluster node '{target}'")
    full = params.get("full", "0" if source.is_template else "1").lower() in _BOOL_TRUE
    if not full and not source.is_template:
        raise ApiError(500, "Linked clone feature is not supported for running VMs or non-template VMs")
    if not full and "storage" in params:
        # PVE refuses this in parameter verification, before any work starts.
        raise ApiError(400, "Parameter verification failed.", {"storage": "only allowed with full clone"})
    storage = params.get("storage", "local-lvm")
    if storage not in double.storages[target]:
        raise ApiError(500, f"storage '{storage}' does not exist")
    if newid in double.vms:
        raise ApiError(500, f"unable to create VM {newid}: config file already exists")
    # PVE first writes a config holding nothing but the clone lock, so the vmid is taken at once
    # while the disks copy; name and description only appear when the task finishes.
    placeholder = DoubleVM(vmid=newid, node=target, config={"lock": "clone"})
    double.vms[newid] = placeholder

    def new_config() -> dict[str, Any]:
        config = {
            k: v for k, v in source.config.items() if k not in ("template", "lock", "vmgenid", "digest")
        }
        disk = 0
        for key, value in sorted(config.items()):
            if _DISK_KEY.fullmatch(key) and disk_size_bytes(str(value)) is not None:
                rest = str(value).split(",", 1)[1] if "," in str(value) else ""
                config[key] = f"{storage}:vm-{newid}-disk-{disk}" + (f",{rest}" if rest else "")
                disk += 1
            elif _DISK_KEY.fullmatch(key) and "cloudinit" in str(value):
                config[key] = f"{storage}:vm-{newid}-cloudinit,media=cdrom"
            elif re.fullmatch(r"net\d+", key):
                model = str(value).split(",")[0].split("=")[0]
                config[key] = re.sub(r"^[^,]+", f"{model}={_mac()}", str(value))
        config["name"] = params.get("name", f"Copy-of-VM-{source.config.get('name', source.vmid)}")
        if "description" in params:
            config["description"] = params["description"]
        if "pool" in params:
            config["pool"] = params["pool"]
        config["vmgenid"] = _uuid()
        return config

    def finish() -> None:
        needed = sum(disk_size_bytes(str(v)) or 0 for k, v in source.config.items() if _DISK_KEY.fullmatch(k))
        free = double.storages[target][storage] * 1024**3
        if needed > free:
            failed()
            extents, required = free // (4 * 1024**2), needed // (4 * 1024**2)
            raise TaskError(
                f"clone failed: lvcreate 'pve/vm-{newid}-disk-0' error:   Volume group \"pve\" has "
                f"insufficient free space ({extents} extents): {required} required."
            )
        placeholder.config = double._typed(new_config())

    def failed() -> None:
        # PVE's own cleanup of a failed clone can fail too; the half-made VM (unlocked, marker and
        # all) is what the adapter must then remove, so leave it behind.
        partial = new_config()
        placeholder.config = double._typed(partial)

    return double._start_task(
        source.node,
        "qmclone",
        str(source.vmid),
        call.user,
        on_success=finish,
        on_failure=failed,
        failure=source.clone_failure,
    )


@_route("PUT", "/nodes/{node}/qemu/{vmid}/resize")
def _resize(double: ProxmoxDouble, call: _Call) -> Any:
    vm = double._vm(call)
    double._unlocked(vm)
    disk = call.params["disk"]
    current = vm.config.get(disk)
    if current is None:
        raise ApiError(500, f"disk '{disk}' does not exist")
    old = disk_size_bytes(str(current)) or 0
    size = call.params["size"]
    grow = size.startswith("+")
    requested = _size_to_bytes(size.lstrip("+"))
    new = old + requested if grow else requested
    if new < old:
        raise ApiError(500, "shrinking disks is not supported")

    def finish() -> None:
        vm.config[disk] = _set_prop(str(vm.config[disk]), "size", _bytes_to_size(new))

    return double._start_task(vm.node, "resize", str(vm.vmid), call.user, finish)


@_route("DELETE", "/nodes/{node}/qemu/{vmid}")
def _destroy(double: ProxmoxDouble, call: _Call) -> Any:
    vm = double._vm(call)
    if not call.params.get("skiplock"):
        double._unlocked(vm)
    if vm.config.get("protection"):
        raise ApiError(500, f"can't remove VM {vm.vmid} - protection mode enabled")
    if vm.status != "stopped":
        raise ApiError(500, f"VM {vm.vmid} is running - destroy failed")

    def finish() -> None:
        double.vms.pop(vm.vmid, None)

    return double._start_task(vm.node, "qmdestroy", str(vm.vmid), call.user, finish)


@_route("GET", "/nodes/{node}/qemu/{vmid}/firewall/options")
def _fw_options(double: ProxmoxDouble, call: _Call) -> Any:
    vm = double._vm(call)
    return {
        **vm.firewall_options,
        "digest": hashlib.sha1(  # noqa: S324 - a change detector, not security
            json.dumps(vm.firewall_options, sort_keys=True).encode()
        ).hexdigest(),
    }


@_route("PUT", "/nodes/{node}/qemu/{vmid}/firewall/options")
def _fw_set_options(double: ProxmoxDouble, call: _Call) -> Any:
    vm = double._vm(call)
    found = double.schema.match("/nodes/pve1/qemu/100/firewall/options")
    assert found is not None
    properties = found[0].methods["PUT"]["parameters"]["properties"]
    for key in filter(None, _LIST_SPLIT.split(call.params.get("delete", ""))):
        vm.firewall_options.pop(key, None)
    for key, value in call.params.items():
        if key not in ("node", "vmid", "digest", "delete"):
            vm.firewall_options[key] = coerce(properties.get(key), value)
    return None


def _rules_digest(vm: DoubleVM) -> str:
    return hashlib.sha1(
        json.dumps(vm.firewall_rules, sort_keys=True).encode(), usedforsecurity=False
    ).hexdigest()


@_route("GET", "/nodes/{node}/qemu/{vmid}/firewall/rules")
def _fw_rules(double: ProxmoxDouble, call: _Call) -> Any:
    vm = double._vm(call)
    digest = _rules_digest(vm)
    return [{**rule, "pos": pos, "digest": digest} for pos, rule in enumerate(vm.firewall_rules)]


@_route("GET", "/nodes/{node}/qemu/{vmid}/firewall/rules/{pos}")
def _fw_rule(double: ProxmoxDouble, call: _Call) -> Any:
    vm = double._vm(call)
    pos = int(call.params.get("pos", -1))
    if not 0 <= pos < len(vm.firewall_rules):
        raise ApiError(500, f"no rule at position {pos}")
    return {**vm.firewall_rules[pos], "pos": pos, "digest": _rules_digest(vm)}


_RULE_FIELDS = (
    "type",
    "action",
    "proto",
    "dport",
    "sport",
    "source",
    "dest",
    "macro",
    "iface",
    "log",
    "comment",
    "enable",
    "icmp-type",
)


def _check_rule(double: ProxmoxDouble, rule: Mapping[str, Any]) -> None:
    if rule.get("type") == "group":
        if rule.get("action") not in double.firewall_groups:
            raise ApiError(500, f"security group '{rule.get('action')}' does not exist")
    elif rule.get("action") not in ("ACCEPT", "DROP", "REJECT"):
        raise ApiError(400, "Parameter verification failed.", {"action": "unknown action"})
    if "dport" in rule and rule.get("proto") not in ("tcp", "udp", "6", "17", "dccp", "sctp", "udplite"):
        raise ApiError(
            400, "Parameter verification failed.", {"proto": "missing property - 'dport' requires a protocol"}
        )


@_route("POST", "/nodes/{node}/qemu/{vmid}/firewall/rules")
def _fw_add_rule(double: ProxmoxDouble, call: _Call) -> Any:
    vm = double._vm(call)
    if "digest" in call.params and call.params["digest"] != _rules_digest(vm):
        raise ApiError(500, "detected modified configuration - file changed by other user? Try again.")
    rule: dict[str, Any] = {k: call.params[k] for k in _RULE_FIELDS if k in call.params}
    if "enable" in rule:
        rule["enable"] = int(rule["enable"])
    _check_rule(double, rule)
    pos = min(int(call.params.get("pos", 0)), len(vm.firewall_rules))  # PVE inserts at the top
    vm.firewall_rules.insert(pos, rule)
    return None


@_route("PUT", "/nodes/{node}/qemu/{vmid}/firewall/rules/{pos}")
def _fw_update_rule(double: ProxmoxDouble, call: _Call) -> Any:
    vm = double._vm(call)
    pos = int(call.params.get("pos", -1))
    if "digest" in call.params and call.params["digest"] != _rules_digest(vm):
        raise ApiError(500, "detected modified configuration - file changed by other user? Try again.")
    if not 0 <= pos < len(vm.firewall_rules):
        raise ApiError(500, f"no rule at position {pos}")
    rule = vm.firewall_rules[pos]
    for key in filter(None, _LIST_SPLIT.split(call.params.get("delete", ""))):
        rule.pop(key, None)
    rule.update({k: call.params[k] for k in _RULE_FIELDS if k in call.params})
    if "enable" in rule:
        rule["enable"] = int(rule["enable"])
    _check_rule(double, rule)
    if "moveto" in call.params:
        vm.firewall_rules.pop(pos)
        vm.firewall_rules.insert(min(int(call.params["moveto"]), len(vm.firewall_rules)), rule)
    return None


@_route("DELETE", "/nodes/{node}/qemu/{vmid}/firewall/rules/{pos}")
def _fw_delete_rule(double: ProxmoxDouble, call: _Call) -> Any:
    vm = double._vm(call)
    pos = int(call.params.get("pos", -1))
    if "digest" in call.params and call.params["digest"] != _rules_digest(vm):
        raise ApiError(500, "detected modified configuration - file changed by other user? Try again.")
    if not 0 <= pos < len(vm.firewall_rules):
        raise ApiError(500, f"no rule at position {pos}")
    vm.firewall_rules.pop(pos)
    return None


# ============================================================================================
# HTTP plumbing
# ============================================================================================


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        double: ProxmoxDouble,
        context: ssl.SSLContext | None,
    ) -> None:
        self.double = double
        self.context = context
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        if self.context is not None:
            # The handshake runs in the request thread (see _RequestHandler.setup): a client that
            # rejects our certificate must not stall the accept loop.
            connection = self.context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        with self.double._lock:
            self.double._connections.add(connection)
        return connection, address

    def shutdown_request(self, request: Any) -> None:
        with self.double._lock:
            self.double._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes (the TLS tests) and dropped connections (stop()) are expected here.
        pass


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as pveproxy; proxmoxer reuses its session
    server_version = "pve-api-daemon/3.0"
    sys_version = ""
    timeout = 15
    # Headers and body leave in two writes; without TCP_NODELAY each answer waits ~40 ms on the
    # client's delayed ACK, which turns a clone test into seconds.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, reason, payload = self.server.double.handle(
            self.command, split.path, split.query, body, headers
        )
        encoded = json.dumps(payload).encode()
        self.send_response(status, reason.splitlines()[0] if reason else None)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(encoded)))
        self.send_header("Cache-Control", "max-age=0")
        self.end_headers()
        self.wfile.write(encoded)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


# ============================================================================================
# Fixtures
# ============================================================================================


@pytest.fixture(scope="session")
def proxmox_double_server() -> Iterator[ProxmoxDouble]:
    """One HTTPS double per test session (certificate generation is the slow part)."""
    double = ProxmoxDouble(tls=True, task_delay=0.02)
    double.start()
    try:
        yield double
    finally:
        double.close()


@pytest.fixture
def proxmox_double(proxmox_double_server: ProxmoxDouble) -> Iterator[ProxmoxDouble]:
    """The session's double, reset to the seeded inventory, listening, with a clean request log."""
    double = proxmox_double_server
    double.start()
    double.task_delay = 0.02
    double.reset()
    yield double
    double.start()  # a test that stopped the node leaves it running for the next one


__all__ = [
    "ApiError",
    "ApiSchema",
    "DoubleVM",
    "LoggedRequest",
    "ProxmoxDouble",
    "check_value",
    "load_schema",
    "make_tls_files",
    "parse_property_string",
    "proxmox_double",
    "proxmox_double_server",
    "verify_parameters",
]

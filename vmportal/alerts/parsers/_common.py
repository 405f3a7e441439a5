"""What every format parser needs: dotted field access, typed reads that fail with the field's name,
and the collection of tagged addresses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vmportal.alerts.model import AddressRole, AlertFormat, ParseError, TaggedAddress, normalise_ip

_MISSING: Any = object()


@dataclass(frozen=True)
class Context:
    source: str
    received_at: datetime


def lookup(record: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """The value at a dotted path, whether the record nests (``{"id": {"orig_h": …}}``), flattens
    (``{"id.orig_h": …}``, as Zeek and Kibana write) or mixes both (``{"kibana.alert": {"uuid": …}}``)."""
    found = _lookup(record, path)
    return default if found is _MISSING else found


def _lookup(node: Any, path: str) -> Any:
    if not isinstance(node, Mapping):
        return _MISSING
    if path in node:
        return node[path]
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if head in node:
            found = _lookup(node[head], ".".join(parts[cut:]))
            if found is not _MISSING:
                return found
    return _MISSING


class Reader:
    """Typed reads from one record; every failure is a ParseError naming the format and the field."""

    def __init__(self, fmt: AlertFormat | str, record: Mapping[str, Any], prefix: str = "") -> None:
        self.fmt = str(fmt)
        self.record = record
        self.prefix = prefix  # "alerts[2]." for an Alertmanager alert inside its payload

    def fail(self, path: str, reason: str) -> ParseError:
        where = f"{self.prefix}{path}"
        return ParseError(f"{self.fmt}: field '{where}' {reason}", field=where)

    def get(self, path: str, default: Any = None) -> Any:
        return lookup(self.record, path, default)

    def has(self, path: str) -> bool:
        return lookup(self.record, path, _MISSING) is not _MISSING

    def text(self, path: str, *, required: bool = False, max_len: int = 4096) -> str | None:
        value = self.get(path)
        if value is None:
            if required:
                raise self.fail(path, "is missing")
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(path, f"must be a string, got {type(value).__name__}")
        text = str(value).strip()
        if required and not text:
            raise self.fail(path, "is empty")
        if len(text) > max_len:
            # An identifier cut short could collide with another; an optional detail is just cut.
            if required:
                raise self.fail(path, f"is longer than {max_len} characters")
            text = text[:max_len]
        return text or None

    def req_text(self, path: str, *, max_len: int = 4096) -> str:
        value = self.text(path, required=True, max_len=max_len)
        assert value is not None  # required=True never returns None
        return value

    def integer(self, path: str, *, required: bool = False) -> int | None:
        value = self.get(path)
        if value is None:
            if required:
                raise self.fail(path, "is missing")
            return None
        if isinstance(value, bool):
            raise self.fail(path, "must be an integer, got a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 30:
            return int(value.strip())
        raise self.fail(path, f"must be an integer, got {value!r:.60}")

    def req_integer(self, path: str) -> int:
        value = self.integer(path, required=True)
        assert value is not None
        return value

    def mapping(self, path: str, *, required: bool = False) -> Mapping[str, Any]:
        value = self.get(path)
        if value is None:
            if required:
                raise self.fail(path, "is missing")
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be an object, got {type(value).__name__}")
        return value

    def strings(self, path: str) -> list[str]:
        """A list of strings, also from a single string or a comma-joined one (a Mustache-rendered list)."""
        value = self.get(path)
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            return [
                str(item).strip()
                for item in value
                if isinstance(item, str | int | float) and str(item).strip()
            ]
        raise self.fail(path, f"must be a string or a list of strings, got {type(value).__name__}")


@dataclass
class Addresses:
    """Tagged addresses in record order, each (ip, role) once; values that are not IPs are kept aside."""

    tagged: list[TaggedAddress] = field(default_factory=list)
    not_ip: dict[str, str] = field(default_factory=dict)

    def add(self, value: Any, role: AddressRole, field_name: str) -> str | None:
        if value is None or value == "":
            return None
        ip = normalise_ip(value)
        if ip is None:
            self.not_ip[field_name] = str(value)[:200]
            return None
        if not any(a.ip == ip and a.role is role for a in self.tagged):
            self.tagged.append(TaggedAddress(ip, role, field_name))
        return ip

    def require(self, reader: Reader, path: str, role: AddressRole) -> str:
        value = reader.get(path)
        if value is None or value == "":
            raise reader.fail(path, "is missing")
        ip = normalise_ip(value)
        if ip is None:
            raise reader.fail(path, f"is not an IP address: {str(value)!r:.60}")
        self.add(ip, role, path)
        return ip

    def roles_of(self, ip: str) -> set[AddressRole]:
        return {a.role for a in self.tagged if a.ip == ip}


def epoch_to_iso(value: Any) -> str | None:
    """A Unix time (Zeek's ``ts``) as ISO 8601 UTC, or None when it is not a plausible one."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if not 0 <= seconds < 32503680000:  # before year 3000
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()

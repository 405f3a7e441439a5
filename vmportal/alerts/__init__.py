"""Security alerts in: the internal alert, the format parsers, sender authentication, VM matching and
Nmap reports. Pure functions over plain data (no database, no HTTP); the ingestion service stores and
acts on what they return. See ``reference/alert-formats.md`` for the formats and their mappings.
"""

from vmportal.alerts.match import Inventory, VMMatch, match_all, match_vm
from vmportal.alerts.model import (
    AddressRole,
    Alert,
    AlertFormat,
    ParseError,
    SourceKind,
    TaggedAddress,
    normalise_host,
    normalise_ip,
)
from vmportal.alerts.parsers import (
    BatchParseError,
    ParsedBatch,
    detect_format,
    parse,
    parse_batch,
    parse_record,
)

__all__ = [
    "AddressRole",
    "Alert",
    "AlertFormat",
    "BatchParseError",
    "Inventory",
    "ParseError",
    "ParsedBatch",
    "SourceKind",
    "TaggedAddress",
    "VMMatch",
    "detect_format",
    "match_all",
    "match_vm",
    "normalise_host",
    "normalise_ip",
    "parse",
    "parse_batch",
    "parse_record",
]

"""Shared pieces for the alert tests: the portal's clock and a helper parsing one record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from vmportal.alerts import Alert, SourceKind, parse

RECEIVED = datetime(2026, 3, 16, 6, 0, 0, tzinfo=UTC)

# The VM address pool the tests use: campus VMs on 10.20.0.0/16 and 2001:db8:20::/48 (documentation
# prefix); outsiders on 198.51.100.0/24 and 203.0.113.0/24.
VM_A = "10.20.1.15"
VM_B = "10.20.1.16"
VM_V6 = "2001:db8:20::15"
OUTSIDER = "198.51.100.23"
C2_SERVER = "203.0.113.80"


def one(kind: SourceKind | str, record: Any, *, source: str = "test-source") -> Alert:
    alerts = parse(kind, record, source=source, received_at=RECEIVED)
    assert len(alerts) == 1, alerts
    return alerts[0]

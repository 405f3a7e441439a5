"""Compliance's tables and their states.

The tables (``notice``, ``finding``, ``service_scan``, ``service_violation``, ``service_exemption``) are
defined in :mod:`vmportal.incidents.models`, below this domain, because an incident can open a finding;
they are re-exported here so compliance's modules read their records from their own domain. The
enumerations a notice is entered with are compliance's own.
"""

from __future__ import annotations

import enum

from vmportal.incidents.models import (  # noqa: F401  (re-exported: compliance's records)
    Finding,
    FindingState,
    Notice,
    ServiceExemption,
    ServiceScan,
    ServiceViolation,
    ViolationState,
)


class Issuer(enum.StrEnum):
    MINISTRY = "教育部"
    POLICE = "公安"
    CAC = "网信"
    CNCERT = "CNCERT"
    SCANNER_360 = "360"
    OTHER = "other"


ISSUER_KIND: dict[Issuer, str] = {
    Issuer.MINISTRY: "ministry",
    Issuer.POLICE: "police",
    Issuer.CAC: "cac",
    Issuer.CNCERT: "cncert",
    Issuer.SCANNER_360: "scanner",
    Issuer.OTHER: "other",
}


class EventType(enum.StrEnum):
    TROJAN_SITE = "挂马"
    DARK_LINK = "暗链"
    DEFACEMENT = "篡改"
    WEBSHELL = "webshell"
    BACKDOOR = "后门"
    BOTNET = "僵木蠕"
    MINING = "挖矿"
    HIGH_VULNERABILITY = "高危漏洞"
    MEDIUM_VULNERABILITY = "中危漏洞"
    WEAK_PASSWORD = "弱口令"  # noqa: S105  (the event's name, not a secret)
    HARMFUL_CONTENT = "有害信息"


class NoticeState(enum.StrEnum):
    UNMATCHED = "unmatched"  # no VM or unit found: the center assigns it
    OPEN = "open"  # matched; the incident waits for the center's confirmation (or names a unit only)
    CONFIRMED = "confirmed"  # a center user ordered the containment

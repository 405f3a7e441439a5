"""The agreement's rules as pure functions. Imports nothing of ``vmportal`` or ``hypervisors``.

One module per group of rules (DESIGN.md, "The rules"); each takes plain data and answers
:class:`Allow` or :class:`Deny`, and :func:`combine` makes a :class:`Decision` of several.
"""

from policies.base import Allow, Decision, Deny, Rule, Verdict, combine
from policies.catalog import RULES
from policies.compromise import (
    DEFAULT_TABLE,
    Category,
    Confidence,
    Containment,
    ContainmentDecision,
    ContainmentRule,
    Severity,
    decide_containment,
)
from policies.credentials import check_credentials_once
from policies.deadline import AT_RISK, PROVISIONING_DAYS, DeadlineStatus, deadline_status, due_at
from policies.forbidden_services import ServiceFacts, ServiceKind, check_forbidden_service, classify_service
from policies.maintenance import check_maintenance_notice
from policies.paperwork import ContactFacts, PaperworkFacts, check_paperwork, missing_paperwork
from policies.power import SecurityState, VMAction, check_power, check_power_ops, check_suspended_lock
from policies.purpose import Beneficiary, Purpose, PurposeFacts, check_purpose
from policies.quota import QuotaFacts, Resources, check_quota, over_quota
from policies.roles import Actor, Role, is_center

__all__ = [
    "AT_RISK",
    "DEFAULT_TABLE",
    "PROVISIONING_DAYS",
    "RULES",
    "Actor",
    "Allow",
    "Beneficiary",
    "Category",
    "Confidence",
    "ContactFacts",
    "Containment",
    "ContainmentDecision",
    "ContainmentRule",
    "DeadlineStatus",
    "Decision",
    "Deny",
    "PaperworkFacts",
    "Purpose",
    "PurposeFacts",
    "QuotaFacts",
    "Resources",
    "Role",
    "Rule",
    "SecurityState",
    "ServiceFacts",
    "ServiceKind",
    "Severity",
    "VMAction",
    "Verdict",
    "check_credentials_once",
    "check_forbidden_service",
    "check_maintenance_notice",
    "check_paperwork",
    "check_power",
    "check_power_ops",
    "check_purpose",
    "check_quota",
    "check_suspended_lock",
    "classify_service",
    "combine",
    "deadline_status",
    "decide_containment",
    "due_at",
    "is_center",
    "missing_paperwork",
    "over_quota",
]

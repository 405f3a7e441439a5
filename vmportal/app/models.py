"""Every table, imported in one place so Alembic and tests see the whole metadata."""

from vmportal.audit.models import AuditEntry, AuditHead
from vmportal.center.models import CenterSetting
from vmportal.cleanup.models import CleanupCampaign, CleanupItem, CleanupReminder
from vmportal.connection.models import HypervisorConnection
from vmportal.identity.models import AuthToken, CasSession, User
from vmportal.incidents.models import (
    AlertRecord,
    AlertSource,
    AlertWebhookId,
    ContainmentPolicy,
    Finding,
    Incident,
    IncidentEvent,
    Notice,
    Notification,
    Rectification,
    RectificationAttachment,
    SecurityAlert,
    ServiceExemption,
    ServiceScan,
    ServiceViolation,
)
from vmportal.jobs.models import OutboxTask
from vmportal.mail.models import GroupRobot, RobotMessage
from vmportal.maintenance.models import MaintenanceVM, MaintenanceWindow
from vmportal.network.models import IPAllocation, IPPool
from vmportal.paperwork.models import GeneratedPaper
from vmportal.request.models import RequestReminder, RequestState, VMRequest
from vmportal.unit.models import Contact, ContactRole, Document, DocumentKind, InformationSystem, Quota, Unit
from vmportal.vm.models import VM, DeliveryCredential, Lifecycle, PowerOperation, PowerOpState

__all__ = [
    "VM",
    "AlertRecord",
    "AlertSource",
    "AlertWebhookId",
    "AuditEntry",
    "AuditHead",
    "AuthToken",
    "CasSession",
    "CenterSetting",
    "CleanupCampaign",
    "CleanupItem",
    "CleanupReminder",
    "Contact",
    "ContactRole",
    "ContainmentPolicy",
    "DeliveryCredential",
    "Document",
    "DocumentKind",
    "Finding",
    "GeneratedPaper",
    "GroupRobot",
    "HypervisorConnection",
    "IPAllocation",
    "IPPool",
    "Incident",
    "IncidentEvent",
    "InformationSystem",
    "Lifecycle",
    "MaintenanceVM",
    "MaintenanceWindow",
    "Notice",
    "Notification",
    "OutboxTask",
    "PowerOpState",
    "PowerOperation",
    "Quota",
    "Rectification",
    "RectificationAttachment",
    "RequestReminder",
    "RequestState",
    "RobotMessage",
    "SecurityAlert",
    "ServiceExemption",
    "ServiceScan",
    "ServiceViolation",
    "Unit",
    "User",
    "VMRequest",
]

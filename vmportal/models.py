"""Every table, imported in one place so Alembic and tests see the whole metadata."""

from vmportal.audit.models import AuditEntry, AuditHead
from vmportal.center.models import CenterSetting
from vmportal.connection.models import HypervisorConnection
from vmportal.identity.models import AuthToken, User
from vmportal.network.models import IPAllocation, IPPool
from vmportal.request.models import RequestState, VMRequest
from vmportal.tasks.models import OutboxTask
from vmportal.unit.models import Contact, ContactRole, Document, DocumentKind, InformationSystem, Quota, Unit
from vmportal.vm.models import VM, DeliveryCredential, Lifecycle, PowerOperation, PowerOpState

__all__ = [
    "VM",
    "AuditEntry",
    "AuditHead",
    "AuthToken",
    "CenterSetting",
    "Contact",
    "ContactRole",
    "DeliveryCredential",
    "Document",
    "DocumentKind",
    "HypervisorConnection",
    "IPAllocation",
    "IPPool",
    "InformationSystem",
    "Lifecycle",
    "OutboxTask",
    "PowerOpState",
    "PowerOperation",
    "Quota",
    "RequestState",
    "Unit",
    "User",
    "VMRequest",
]

"""Hypervisor adapters: the contract (:mod:`hypervisors.base`) and its implementations."""

from hypervisors.base import (
    Capabilities,
    ChangeBatch,
    ChangeKind,
    CloneSpec,
    ConnectionCheck,
    ConnectionConfig,
    HypervisorAdapter,
    HypervisorError,
    HypervisorKind,
    PowerAction,
    PowerState,
    TemplateInfo,
    VMChange,
    VMInfo,
)
from hypervisors.registry import create

__all__ = [
    "Capabilities",
    "ChangeBatch",
    "ChangeKind",
    "CloneSpec",
    "ConnectionCheck",
    "ConnectionConfig",
    "HypervisorAdapter",
    "HypervisorError",
    "HypervisorKind",
    "PowerAction",
    "PowerState",
    "TemplateInfo",
    "VMChange",
    "VMInfo",
    "create",
]

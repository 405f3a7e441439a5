"""Hypervisor adapters: the contract (:mod:`hypervisors.base`) and its implementations."""

from hypervisors.base import (
    Capabilities,
    CloneSpec,
    ConnectionCheck,
    ConnectionConfig,
    HypervisorAdapter,
    HypervisorError,
    HypervisorKind,
    PowerAction,
    PowerState,
    TemplateInfo,
    VMInfo,
)
from hypervisors.registry import create

__all__ = [
    "Capabilities",
    "CloneSpec",
    "ConnectionCheck",
    "ConnectionConfig",
    "HypervisorAdapter",
    "HypervisorError",
    "HypervisorKind",
    "PowerAction",
    "PowerState",
    "TemplateInfo",
    "VMInfo",
    "create",
]

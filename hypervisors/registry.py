"""Adapter implementations looked up by :class:`HypervisorKind`.

Implementations register a factory here; callers never import a provider module directly, so the
pyvmomi and proxmoxer imports stay out of processes that do not need them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from hypervisors.base import ConnectionConfig, HypervisorAdapter, HypervisorKind, NotSupported

AdapterFactory = Callable[[ConnectionConfig], HypervisorAdapter]

# Module that registers each kind, imported on first use.
_MODULES: dict[HypervisorKind, str] = {
    HypervisorKind.SIMULATOR: "hypervisors.simulator",
    HypervisorKind.VSPHERE: "hypervisors.vsphere",
    HypervisorKind.PROXMOX: "hypervisors.proxmox",
}
_FACTORIES: dict[HypervisorKind, AdapterFactory] = {}


def register(kind: HypervisorKind) -> Callable[[AdapterFactory], AdapterFactory]:
    def decorate(factory: AdapterFactory) -> AdapterFactory:
        _FACTORIES[kind] = factory
        return factory

    return decorate


def create(config: ConnectionConfig) -> HypervisorAdapter:
    """Build an adapter for ``config``. Nothing is contacted until the first call."""
    kind = HypervisorKind(config.kind)
    if kind not in _FACTORIES:
        module = _MODULES.get(kind)
        if module is None:
            raise NotSupported(f"no adapter for hypervisor kind {kind!s}")
        importlib.import_module(module)
    return _FACTORIES[kind](config)

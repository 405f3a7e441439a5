"""The vSphere adapter (vCenter, or govmomi's vcsim, through pyVmomi).

:class:`~hypervisors.vsphere.adapter.VSphereAdapter` is the class callers use; its module docstring
describes the connection settings. Importing this package registers it for
:attr:`~hypervisors.base.HypervisorKind.VSPHERE` with :mod:`hypervisors.registry`. The names below
are the ones the rest of the project (tests, benchmarks) imports from ``hypervisors.vsphere``.
"""

from hypervisors.vsphere.adapter import VSphereAdapter
from hypervisors.vsphere.collector import DEFAULT_PAGE_SIZE
from hypervisors.vsphere.inventory import MARKER_EXTRA_CONFIG_KEY, MARKER_PREFIX, VM_PROPERTIES, marker_of

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MARKER_EXTRA_CONFIG_KEY",
    "MARKER_PREFIX",
    "VM_PROPERTIES",
    "VSphereAdapter",
    "marker_of",
]

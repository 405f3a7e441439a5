"""The vSphere adapter (vCenter, or govmomi's vcsim, through pyVmomi); see :mod:`.adapter`.

Importing this package registers the adapter with :mod:`hypervisors.registry`.
"""

from hypervisors.vsphere.adapter import (
    DEFAULT_PAGE_SIZE,
    MARKER_EXTRA_CONFIG_KEY,
    MARKER_PREFIX,
    VM_PROPERTIES,
    VSphereAdapter,
    _parse_url,
    marker_of,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MARKER_EXTRA_CONFIG_KEY",
    "MARKER_PREFIX",
    "VM_PROPERTIES",
    "VSphereAdapter",
    "_parse_url",
    "marker_of",
]

"""The Proxmox VE adapter (proxmoxer, API tokens); see :mod:`hypervisors.proxmox.adapter`.

Importing this package registers the adapter for :attr:`~hypervisors.base.HypervisorKind.PROXMOX`
with :mod:`hypervisors.registry`. The names below are the ones the rest of the project imports from
``hypervisors.proxmox``.
"""

from hypervisors.proxmox.adapter import ProxmoxAdapter
from hypervisors.proxmox.vmconfig import MARKER_PREFIX, WEB_BLOCK_COMMENT, WEB_BLOCK_TAG

__all__ = ["MARKER_PREFIX", "WEB_BLOCK_COMMENT", "WEB_BLOCK_TAG", "ProxmoxAdapter"]

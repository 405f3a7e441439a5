"""The Proxmox VE adapter (proxmoxer, API tokens); see :mod:`.adapter`.

Importing this package registers the adapter with :mod:`hypervisors.registry`.
"""

from hypervisors.proxmox.adapter import MARKER_PREFIX, WEB_BLOCK_COMMENT, WEB_BLOCK_TAG, ProxmoxAdapter

__all__ = ["MARKER_PREFIX", "WEB_BLOCK_COMMENT", "WEB_BLOCK_TAG", "ProxmoxAdapter"]

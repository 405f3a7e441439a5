"""The VM list as a page lane reads it: the session's account and a page of VMs in one statement of
the SQL reader (PostgreSQL only; see vmportal/web/vm_lane.py). Pages call services, never queries:
this is the service the lane calls."""

from __future__ import annotations

from vmportal.vm.repository.sql import PageRead, PageUser, VMReader
from vmportal.vm.schemas import VMFilters

__all__ = ["PageRead", "PageUser", "VMReader", "list_page"]


async def list_page(reader: VMReader, token: str, filters: VMFilters) -> PageRead | None:
    """The page's rows and account for a live session token, None otherwise (no live token, or a VM
    without its stored document): the caller then leaves the request to the router's page."""
    return await reader.list_page(token, filters)

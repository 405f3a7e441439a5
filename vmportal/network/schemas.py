"""What the IP pool endpoints accept and answer.

Shapes and lengths are checked here; whether an address lies inside the pool's CIDR is checked by
:mod:`vmportal.network.service`, which names the field it found wrong.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class PoolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="Unique name, e.g. 'campus-servers'.")
    cidr: str = Field(
        min_length=3, max_length=64, description="The network, host bits clear: '10.20.0.0/24'."
    )
    gateway: str = Field(min_length=2, max_length=64, description="Default gateway, inside the CIDR.")
    dns: list[str] = Field(default_factory=list, max_length=4, description="DNS servers (any network).")
    excluded: list[str] = Field(
        default_factory=list,
        max_length=200,
        description="Addresses never handed out: single addresses or ranges 'a-b', inside the CIDR.",
    )
    network: str = Field(
        "", max_length=200, description="Port group (vSphere) or bridge (Proxmox) the pool's VMs join."
    )
    connection_id: int | None = Field(
        None, gt=0, description="The hypervisor connection whose default pool this is (lowest id wins)."
    )


class PoolPatch(BaseModel):
    """Every field optional; the CIDR changes only while no address of the pool is live."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=100)
    cidr: str | None = Field(None, min_length=3, max_length=64)
    gateway: str | None = Field(None, min_length=2, max_length=64)
    dns: list[str] | None = Field(None, max_length=4)
    excluded: list[str] | None = Field(None, max_length=200)
    network: str | None = Field(None, max_length=200)
    connection_id: int | None = Field(None, gt=0)


class PoolCounts(BaseModel):
    size: int = Field(description="Addresses the pool can hand out: hosts minus gateway and exclusions.")
    used: int = Field(description="Addresses given to a VM (or a request being provisioned) right now.")
    free: int = Field(description="Addresses that can still be handed out.")


class PoolOut(BaseModel):
    id: int
    name: str
    cidr: str
    prefix_length: int
    gateway: str
    dns: list[str]
    excluded: list[str]
    network: str
    connection_id: int | None
    created_at: datetime
    counts: PoolCounts


class AllocationOut(BaseModel):
    id: int
    address: str
    request_id: int | None
    vm_id: int | None
    allocated_at: datetime
    released_at: datetime | None

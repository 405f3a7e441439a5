"""What the hypervisor connection and template endpoints accept and answer.

A connection's secret (vSphere password, Proxmox API token secret) goes in and never comes out:
answers say only whether one is set.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from hypervisors.base import HypervisorKind

DefaultKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
DefaultValue = Annotated[str, StringConstraints(max_length=200)]


class ConnectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: HypervisorKind
    name: str = Field(min_length=1, max_length=100)
    url: str = Field(
        min_length=1,
        max_length=500,
        description="https://vcenter.example.edu.cn (vSphere), https://pve1:8006 (Proxmox), "
        "simulator://memory/<name> or a state file under the data directory (simulator).",
    )
    username: str = Field("", max_length=200, description="vSphere user, e.g. portal@vsphere.local.")
    token_id: str = Field("", max_length=200, description="Proxmox API token id: user@realm!tokenname.")
    secret: SecretStr | None = Field(
        None, description="Password or API token secret; encrypted at rest, never returned."
    )
    verify_tls: bool = Field(True, description="Verify the server's certificate (turn off only in a lab).")
    ca_file: str | None = Field(None, max_length=500, description="CA bundle (PEM) on the portal's server.")
    defaults: dict[DefaultKey, DefaultValue] = Field(
        default_factory=dict,
        max_length=20,
        description="Default placement: folder, pool, datastore, node, network, cluster, host.",
    )
    active: bool = True


class ConnectionPatch(BaseModel):
    """Every field optional. ``secret`` replaces the stored one; an empty string removes it."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=100)
    url: str | None = Field(None, min_length=1, max_length=500)
    username: str | None = Field(None, max_length=200)
    token_id: str | None = Field(None, max_length=200)
    secret: SecretStr | None = None
    verify_tls: bool | None = None
    ca_file: str | None = Field(None, max_length=500)
    defaults: dict[DefaultKey, DefaultValue] | None = Field(None, max_length=20)
    active: bool | None = None


class ConnectionOut(BaseModel):
    id: int
    name: str
    kind: str
    url: str
    username: str
    token_id: str
    has_secret: bool
    verify_tls: bool
    ca_file: str | None
    defaults: dict[str, str]
    active: bool
    last_check_at: datetime | None
    last_check_ok: bool | None
    last_check_message: str
    created_at: datetime


class ConnectionCheckOut(BaseModel):
    connection_id: int
    ok: bool
    message: str
    product: str
    version: str
    vm_count: int
    template_count: int
    checked_at: datetime


class TemplateOut(BaseModel):
    """One template a VM can be cloned from, as the request form offers it."""

    connection_id: int
    connection: str
    ref: str
    name: str
    os: str
    vcpus: int
    memory_gib: float
    disk_gib: float

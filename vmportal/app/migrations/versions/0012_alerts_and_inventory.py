"""alerts and inventory: an alert's VM found by indexed look-ups, not by reading the inventory

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 20:00:00

Matching an alert read every active VM's addresses for every processing task: at 20,000 VMs that
is most of an alert's cost. It now asks only for the VMs holding one of the alert's addresses or
hostnames (``vmportal.alerts.repository``):

* ``vm.ip_address`` had its B-tree index already;
* ``vm.ips`` (the inventory's addresses, a JSON list): on PostgreSQL a GIN index on ``ips::jsonb``,
  which answers ``?|`` (any of these strings is an element); SQLite reads the lists with
  ``json_each`` (the embedded default holds small inventories) and gets no index;
* ``information_system.domains``: the same GIN index on PostgreSQL, for an alert's hostname;
* ``vm.system_id``: a B-tree index, for the VMs of the systems found.

The GIN indexes are expressions, which autogenerate does not compare: they live here only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vm") as batch:
        batch.create_index("ix_vm_system_id", ["system_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_vm_ips_jsonb", "vm", [sa.text("(ips::jsonb)")], postgresql_using="gin")
        op.create_index(
            "ix_information_system_domains_jsonb",
            "information_system",
            [sa.text("(domains::jsonb)")],
            postgresql_using="gin",
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_information_system_domains_jsonb", table_name="information_system")
        op.drop_index("ix_vm_ips_jsonb", table_name="vm")
    with op.batch_alter_table("vm") as batch:
        batch.drop_index("ix_vm_system_id")

"""ip_allocation: one live allocation per address across every pool

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 12:00:00

Until now the partial unique index ``uq_ip_allocation_live`` held per pool (pool_id, address): two
pools with overlapping CIDRs handed one address to two VMs (issue 11, point 4). It becomes
``uq_ip_allocation_live_address`` on the address alone, still only over live rows (released_at IS
NULL), so the database refuses a second live holder of an address whichever pool it comes from.

Existing data may already hold an address twice. Then the upgrade is refused before it changes
anything, with each address, its allocations, pools, VMs and requests listed, and how to resolve
it: which of two running VMs keeps the address is a decision for the center, not for a migration
(releasing one row silently would let the address be handed out a third time once the other VM is
decommissioned, while the first still uses it).
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = sa.text("released_at IS NULL")


class DuplicateLiveAddresses(RuntimeError):
    """Live allocations share an address: the new unique index cannot be built."""


def _duplicates(bind: sa.Connection) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in bind.execute(
            sa.text(
                "SELECT a.address, a.id, a.pool_id, p.name, a.vm_id, a.request_id "
                "FROM ip_allocation a LEFT JOIN ip_pool p ON p.id = a.pool_id "
                "WHERE a.released_at IS NULL AND a.address IN ("
                "  SELECT address FROM ip_allocation WHERE released_at IS NULL "
                "  GROUP BY address HAVING COUNT(*) > 1) "
                "ORDER BY a.address, a.id"
            )
        )
    ]


def _refusal(rows: list[tuple[Any, ...]]) -> str:
    lines = [
        f"  {address}: allocation {ident} (pool {pool_id} '{name}', vm {vm_id}, request {request_id})"
        for address, ident, pool_id, name, vm_id, request_id in rows
    ]
    ids = ", ".join(str(row[1]) for row in rows)
    return "\n".join(
        [
            "migration 0014 refused: these addresses are held by more than one live allocation, "
            "so one live allocation per address cannot be enforced",
            "迁移 0014 未执行：以下地址同时分配给了多台虚拟机，无法建立“每个地址只分配一次”的约束",
            *lines,
            "For each address decide which VM keeps it; give the other VM a new address on the "
            "hypervisor and release its allocation, e.g.",
            "对每个地址确定由哪台虚拟机保留；为另一台在虚拟化平台上更换地址，并释放其分配记录，例如：",
            "  UPDATE ip_allocation SET released_at = CURRENT_TIMESTAMP WHERE id = <allocation id>;",
            f"(allocations involved / 涉及的分配记录: {ids}), then run the upgrade again / 然后重新执行升级.",
        ]
    )


def upgrade() -> None:
    rows = _duplicates(op.get_bind())
    if rows:
        raise DuplicateLiveAddresses(_refusal(rows))
    op.drop_index(
        "uq_ip_allocation_live", table_name="ip_allocation", sqlite_where=_LIVE, postgresql_where=_LIVE
    )
    op.create_index(
        "uq_ip_allocation_live_address",
        "ip_allocation",
        ["address"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )


def downgrade() -> None:
    # One live allocation per address implies one per pool and address: always satisfiable.
    op.drop_index(
        "uq_ip_allocation_live_address",
        table_name="ip_allocation",
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )
    op.create_index(
        "uq_ip_allocation_live",
        "ip_allocation",
        ["pool_id", "address"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )

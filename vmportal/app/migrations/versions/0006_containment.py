"""incidents and inventory: containment that holds: the center's protected flag on a VM

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 05:30:00

``vm.protected``: a VM the center marks as never contained automatically (an alert on it opens an
incident for a human). Existing VMs are not protected (a VM of no unit is protected by rule, not by
this flag).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("vm") as batch:
        batch.add_column(sa.Column("protected", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("vm") as batch:
        batch.drop_column("protected")

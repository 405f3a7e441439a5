"""network: one live allocation per address (reserved)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 05:30:00

Reserved in the chain so that work on separate domains adds its schema changes without two heads;
the owner fills in upgrade/downgrade and this docstring.
"""

from collections.abc import Sequence

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

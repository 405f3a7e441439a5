"""paperwork: the PDFs the portal generates for a unit and the signed scan filed for each

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from vmportal.kit.db import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "paperwork_document",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("unit_id", sa.Integer(), sa.ForeignKey("unit.id"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("document_id", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("generated_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("generated_by", sa.Integer(), sa.ForeignKey("user.id"), nullable=True),
        sa.Column("signed_document_id", sa.Integer(), sa.ForeignKey("document.id"), nullable=True),
        sa.Column("signed_at", UTCDateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("document_id"),
    )
    op.create_index("ix_paperwork_document_unit_id", "paperwork_document", ["unit_id"])


def downgrade() -> None:
    op.drop_index("ix_paperwork_document_unit_id", table_name="paperwork_document")
    op.drop_table("paperwork_document")

"""identity: campus sign-on (CAS, LDAP): user.auth_source and the cas_session table

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 20:00:00

``user.auth_source`` says who vouches for an account (local password, LDAP group, CAS list);
``cas_session`` maps the digest of the CAS service ticket that opened a session to its token, so
the CAS server's single log-out can end that session.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

from vmportal.kit.db import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("user") as batch:
        batch.add_column(
            sa.Column("auth_source", AutoString(length=10), nullable=False, server_default="local")
        )
    op.create_table(
        "cas_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_sha256", AutoString(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("cas_user", AutoString(length=128), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["auth_token.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket_sha256"),
    )
    op.create_index(op.f("ix_cas_session_token_id"), "cas_session", ["token_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_cas_session_token_id"), table_name="cas_session")
    op.drop_table("cas_session")
    with op.batch_alter_table("user") as batch:
        batch.drop_column("auth_source")

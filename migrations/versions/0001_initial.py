"""Initial schema: blocks, Merkle nodes, version index, checkpoints, with append-only guards.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ledger import guards
from ledger.tables import APPEND_ONLY_TABLES

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create the tables and their append-only triggers."""
    op.create_table(
        "blocks",
        sa.Column("height", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("format", sa.SmallInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("timestamp", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("block_hash", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("height", name=op.f("pk_blocks")),
        sa.UniqueConstraint("block_hash", name=op.f("uq_blocks_block_hash")),
        sa.UniqueConstraint("prev_hash", name=op.f("uq_blocks_prev_hash")),
    )
    with op.batch_alter_table("blocks") as batch:
        batch.create_index(batch.f("ix_blocks_kind"), ["kind"], unique=False)
    op.create_table(
        "merkle_nodes",
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_merkle_nodes")),
    )
    op.create_table(
        "version_index",
        sa.Column("height", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("major", sa.Integer(), nullable=False),
        sa.Column("micro", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["height"], ["blocks.height"], name=op.f("fk_version_index_height_blocks")),
        sa.PrimaryKeyConstraint("height", name=op.f("pk_version_index")),
        sa.UniqueConstraint("model", "major", "micro", name=op.f("uq_version_index_model")),
    )
    with op.batch_alter_table("version_index") as batch:
        batch.create_index(batch.f("ix_version_index_model"), ["model"], unique=False)
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.Column("created", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
    )
    with op.batch_alter_table("checkpoints") as batch:
        batch.create_index(batch.f("ix_checkpoints_size"), ["size"], unique=False)

    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(guards.function_statement())
    for table in APPEND_ONLY_TABLES:
        for statement in guards.create_statements(dialect, table):
            op.execute(statement)


def downgrade() -> None:
    """Downgrading would delete history: refused on purpose."""
    raise RuntimeError("the ledger schema cannot be downgraded: that would destroy history")

"""SQLAlchemy 2.0 table models. Alembic migrations create them; these declarations must match (tested).

Every table is append-only: triggers created by the migrations refuse UPDATE, DELETE and TRUNCATE.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Tables the triggers protect; the audit checks each has its guards.
APPEND_ONLY_TABLES = ("blocks", "merkle_nodes", "version_index", "checkpoints")


class Base(DeclarativeBase):
    """Declarative base carrying the constraint naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class BlockRow(Base):
    """One block, stored field by field with the exact canonical payload bytes."""

    __tablename__ = "blocks"

    height: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    format: Mapped[int] = mapped_column(SmallInteger)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    timestamp: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    payload_hash: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    block_hash: Mapped[str] = mapped_column(String(64), unique=True)
    signature: Mapped[bytes] = mapped_column(LargeBinary)


class MerkleNodeRow(Base):
    """A complete RFC 9162 subtree hash: level 0 are leaves; (level, idx) covers leaves idx*2^level onwards."""

    __tablename__ = "merkle_nodes"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class VersionIndexRow(Base):
    """Lookup index from (model, version) to the version block; the UNIQUE constraint makes racing appends lose."""

    __tablename__ = "version_index"
    __table_args__ = (UniqueConstraint("model", "major", "micro"),)

    height: Mapped[int] = mapped_column(BigInteger, ForeignKey("blocks.height"), primary_key=True, autoincrement=False)
    model: Mapped[str] = mapped_column(String(100), index=True)
    major: Mapped[int] = mapped_column(Integer)
    micro: Mapped[int] = mapped_column(Integer)


class CheckpointRow(Base):
    """A signed checkpoint (C2SP signed note) the ledger issued."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    size: Mapped[int] = mapped_column(BigInteger, index=True)
    root: Mapped[str] = mapped_column(String(64))
    note: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[str] = mapped_column(String(32))

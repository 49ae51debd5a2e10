"""Alembic migration scripts, shipped inside the wheel so ``ledger db upgrade`` works from an install."""

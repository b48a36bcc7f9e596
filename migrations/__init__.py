"""Alembic migration chain (async env.py, date-prefixed revision files)."""

"""Alembic migrations for the exchange store, run programmatically by `guard.store.db.upgrade`."""

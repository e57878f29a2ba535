"""Exchange storage: schema (Alembic), batch writes with a local spool, queries for review and retraining."""

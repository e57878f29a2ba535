"""Admin API (records, export, reviews), the review page, and the tenant-facing feedback route."""

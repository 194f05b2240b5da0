"""The reference sales database: the schema salesledger captures, as numbered migrations.

``deploy/sql/sales/NNN_name.sql`` holds the schema of the user's sales program as salesledger
expects it (schema ``sales``); :mod:`salesledger.salesdb.migrations` applies those files in order
and records them in ``sales.schema_migrations``. This layer imports psycopg and the settings; it is
plumbing, the posting logic never imports it.
"""

from salesledger.salesdb.migrations import (
    Migration,
    MigrationError,
    MigrationState,
    discover,
    migrate,
    status,
)

__all__ = ["Migration", "MigrationError", "MigrationState", "discover", "migrate", "status"]

from __future__ import annotations

from django.db.backends.postgresql.base import DatabaseWrapper as PostgreSQLDatabaseWrapper

from connguard.db.backends.base.base import GuardedWrapperMixin


class DatabaseWrapper(GuardedWrapperMixin, PostgreSQLDatabaseWrapper):
    """Django's PostgreSQL backend (psycopg 3 or psycopg2), guarded."""

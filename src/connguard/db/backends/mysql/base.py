from __future__ import annotations

from django.db.backends.mysql.base import DatabaseWrapper as MySQLDatabaseWrapper

from connguard.db.backends.base.base import GuardedWrapperMixin


class DatabaseWrapper(GuardedWrapperMixin, MySQLDatabaseWrapper):
    """Django's MySQL/MariaDB backend (mysqlclient or PyMySQL), guarded."""

"""The documented recipe: connguard's mixin on another backend, here Django's MySQL GIS backend."""

from __future__ import annotations

from django.contrib.gis.db.backends.mysql.base import DatabaseWrapper as MySQLGISDatabaseWrapper

from connguard.db.backends.base.base import GuardedWrapperMixin


class DatabaseWrapper(GuardedWrapperMixin, MySQLGISDatabaseWrapper):
    pass

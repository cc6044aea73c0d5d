from __future__ import annotations

import os
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

import connguard
from tests.helpers import kill, make_wrapper, select_one, server_id

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

try:
    from django.contrib.gis.geos import Point
except ImproperlyConfigured:  # no GDAL/GEOS on this machine
    if os.environ.get("CI"):
        raise
    pytest.skip("GDAL and GEOS are not installed", allow_module_level=True)


def test_guarded_gis_backend(servers: Any) -> None:
    connguard.reset_stats()
    wrapper = make_wrapper("mysql", alias="gis", ENGINE="tests.gis_backend")
    from django.contrib.gis.db.backends.mysql.operations import MySQLOperations

    assert isinstance(wrapper.ops, MySQLOperations)  # still the GIS backend
    select_one(wrapper)
    before = server_id(wrapper)
    kill(servers, "mysql", wrapper)
    with wrapper.cursor() as cursor:
        cursor.execute(
            "SELECT ST_X(ST_GeomFromText(%s)), ST_Y(ST_GeomFromText(%s))",
            [str(wrapper.ops.Adapter(Point(3, 4))), str(wrapper.ops.Adapter(Point(3, 4)))],
        )
        assert cursor.fetchone() == (3.0, 4.0)
    assert server_id(wrapper) != before
    assert connguard.stats("gis")["replaced_socket_closed"] == 1

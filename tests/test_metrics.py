"""The Prometheus exporter and the OpenTelemetry bridge, fed by real disconnects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

from connguard import _metrics
from connguard.contrib import opentelemetry, prometheus
from tests.helpers import ALIAS, VENDORS, select_one
from tests.ops_helpers import extra_alias

# The session idle limit that connguard_expire sets: the least idle time it can show.
EXPIRED_AFTER = {"mysql": 1.0, "postgresql": 0.25}


@pytest.fixture(autouse=True)
def _db(servers: dict[str, Any], django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        yield
    prometheus.uninstall()
    opentelemetry.uninstall()


def kill_then_expire(alias: str, kill: Any, expire: Any) -> None:
    """Two real disconnects, each found by the guard's socket check."""
    wrapper = connections[alias]
    select_one(wrapper)
    kill(alias)
    select_one(wrapper)
    expire(alias)
    select_one(wrapper)


@pytest.mark.parametrize("vendor", VENDORS)
def test_prometheus(vendor: str, connguard_kill: Any, connguard_expire: Any) -> None:
    alias = ALIAS[vendor]
    registry = CollectorRegistry()
    metrics = prometheus.install(registry)
    assert prometheus.install(registry) is metrics
    with pytest.raises(RuntimeError, match="Prometheus metrics are installed already"):
        prometheus.install(CollectorRegistry())

    kill_then_expire(alias, connguard_kill, connguard_expire)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"alias": alias, **labels})

    closed = {"reason": "socket_closed"}
    # Invalidations and replacements also name the server.
    at = {**closed, "address": f"127.0.0.1:{connections[alias].settings_dict['PORT']}"}
    assert value("connguard_invalidations_total", **at) == 2
    assert value("connguard_replacements_total", **at) == 2
    assert value("connguard_recycles_total", **closed) is None
    for kind in ("idle", "age"):
        assert value(f"connguard_{kind}_seconds_at_invalidation_count", **closed) == 2
    idle_sum = value("connguard_idle_seconds_at_invalidation_sum", **closed)
    assert idle_sum is not None and idle_sum >= EXPIRED_AFTER[vendor]
    assert value("connguard_idle_seconds_at_invalidation_bucket", le="+Inf", **closed) == 2
    assert value("connguard_idle_seconds_at_invalidation_bucket", le="350.0", **closed) == 2

    prometheus.uninstall()
    assert value("connguard_invalidations_total", **at) is None
    fresh = CollectorRegistry()
    prometheus.install(fresh)
    connguard_kill(alias)
    select_one(connections[alias])
    labels = {"alias": alias, **at}
    assert fresh.get_sample_value("connguard_invalidations_total", labels) == 1


@pytest.mark.parametrize("vendor", VENDORS)
def test_prometheus_validations(vendor: str) -> None:
    registry = CollectorRegistry()
    prometheus.install(registry)
    with extra_alias("pinged", vendor, OPTIONS={"connguard": {"validate_after": 0}}) as alias:
        for _ in range(3):  # the first use opens the connection: nothing to ping yet
            select_one(connections[alias])
    labels = {"alias": "pinged", "reason": "idle", "outcome": "ok"}
    assert registry.get_sample_value("connguard_validations_total", labels) == 2


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


@pytest.mark.parametrize("vendor", VENDORS)
def test_opentelemetry(vendor: str, connguard_kill: Any, connguard_expire: Any) -> None:
    alias = ALIAS[vendor]
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    assert opentelemetry.install(provider) is opentelemetry.install(provider)
    try:
        kill_then_expire(alias, connguard_kill, connguard_expire)
        found = points(reader)
    finally:
        provider.shutdown()
    attributes = {"alias": alias, "reason": "socket_closed"}
    address = f"127.0.0.1:{connections[alias].settings_dict['PORT']}"
    for name in ("connguard.invalidations", "connguard.replacements"):
        (point,) = found[name]
        assert (dict(point.attributes), point.value) == ({**attributes, "address": address}, 2)
    (idle,) = found["connguard.idle_at_invalidation"]
    assert dict(idle.attributes) == attributes
    assert idle.count == 2 and idle.sum >= EXPIRED_AFTER[vendor]
    assert tuple(idle.explicit_bounds) == _metrics.BUCKETS
    (age,) = found["connguard.age_at_invalidation"]
    assert age.count == 2 and age.sum >= idle.sum

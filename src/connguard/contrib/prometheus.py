"""Prometheus metrics for connguard, fed from its signals.

``pip install "django-connguard[prometheus]"``, then once per process (an
``AppConfig.ready()``, or a worker's start-up)::

    from connguard.contrib import prometheus

    prometheus.install()  # into prometheus_client's default REGISTRY

and expose the registry as usual: django-prometheus's ``/metrics`` view, or
``prometheus_client.start_http_server(port)`` in a worker. See docs/metrics.md.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from connguard import _metrics


class PrometheusMetrics(_metrics.Exporter):
    """connguard's counters and histograms in one ``CollectorRegistry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry
        self.counters = {
            spec.name: Counter(
                f"connguard_{spec.name}", spec.description, spec.labels, registry=registry
            )
            for spec in _metrics.COUNTERS
        }
        self.histograms = {
            kind: Histogram(
                f"connguard_{kind}_seconds_at_invalidation",
                description,
                _metrics.HISTOGRAM_LABELS,
                buckets=_metrics.BUCKETS,
                registry=registry,
            )
            for kind, description in _metrics.HISTOGRAMS
        }

    def count(self, spec: _metrics.Counted, labels: dict[str, str]) -> None:
        self.counters[spec.name].labels(**labels).inc()

    def observe(self, kind: str, labels: dict[str, str], seconds: float) -> None:
        self.histograms[kind].labels(**labels).observe(seconds)


_installation: _metrics.Installation[PrometheusMetrics] = _metrics.Installation("Prometheus")


def install(registry: CollectorRegistry = REGISTRY) -> PrometheusMetrics:
    """Register connguard's metrics in ``registry`` and feed them from now on.

    Calling it again with the same registry returns the same metrics.
    """
    return _installation.install(registry, lambda: PrometheusMetrics(registry))


def uninstall() -> None:
    """Stop feeding the metrics and remove them from their registry."""
    metrics = _installation.uninstall()
    if metrics is not None:
        for collector in (*metrics.counters.values(), *metrics.histograms.values()):
            metrics.registry.unregister(collector)

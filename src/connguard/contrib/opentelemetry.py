"""OpenTelemetry metrics for connguard, fed from its signals.

``pip install "django-connguard[opentelemetry]"``, set up a ``MeterProvider``
as usual, then once per process::

    from connguard.contrib import opentelemetry

    opentelemetry.install()  # the global MeterProvider, or install(meter_provider)

See docs/metrics.md.
"""

from __future__ import annotations

from opentelemetry import metrics

from connguard import _metrics


class OpenTelemetryMetrics(_metrics.Exporter):
    """connguard's counters and histograms on one ``Meter`` named ``connguard``."""

    def __init__(self, meter_provider: metrics.MeterProvider) -> None:
        super().__init__()
        meter = meter_provider.get_meter("connguard")
        self.counters = {
            spec.name: meter.create_counter(f"connguard.{spec.name}", "1", spec.description)
            for spec in _metrics.COUNTERS
        }
        self.histograms = {
            kind: meter.create_histogram(
                f"connguard.{kind}_at_invalidation",
                "s",
                description,
                explicit_bucket_boundaries_advisory=_metrics.BUCKETS,
            )
            for kind, description in _metrics.HISTOGRAMS
        }

    def count(self, spec: _metrics.Counted, labels: dict[str, str]) -> None:
        self.counters[spec.name].add(1, labels)

    def observe(self, kind: str, labels: dict[str, str], seconds: float) -> None:
        self.histograms[kind].record(seconds, labels)


_installation: _metrics.Installation[OpenTelemetryMetrics] = _metrics.Installation("OpenTelemetry")


def install(meter_provider: metrics.MeterProvider | None = None) -> OpenTelemetryMetrics:
    """Create connguard's instruments and feed them from now on.

    Without ``meter_provider``, the global one (``metrics.get_meter_provider()``).
    Calling it again with the same provider returns the same instruments.
    """
    provider = meter_provider or metrics.get_meter_provider()
    return _installation.install(provider, lambda: OpenTelemetryMetrics(provider))


def uninstall() -> None:
    """Stop feeding the instruments (OpenTelemetry cannot remove them)."""
    _installation.uninstall()

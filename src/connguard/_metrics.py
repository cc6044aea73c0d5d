"""What the metrics exporters count, fed from connguard's signals: one table
for ``connguard.contrib.prometheus`` and ``connguard.contrib.opentelemetry``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.dispatch import Signal

from connguard import signals


@dataclass(frozen=True)
class Counted:
    signal: Signal  # one of connguard.signals
    name: str  # the metric's stem: connguard_<name>_total, connguard.<name>
    description: str
    labels: tuple[str, ...]


COUNTERS = (
    Counted(
        signals.connection_validated,
        "validations",
        "Connections pinged before use, by why and by outcome.",
        ("alias", "reason", "outcome"),
    ),
    Counted(
        signals.connection_invalidated,
        "invalidations",
        "Connections found dead (or on a read-only node), by how and by server.",
        ("alias", "reason", "address"),
    ),
    Counted(
        signals.connection_replaced,
        "replacements",
        "Dead connections closed so that their next use opens a new one, by why and by server.",
        ("alias", "reason", "address"),
    ),
    Counted(
        signals.connection_recycled,
        "recycles",
        "Healthy connections closed to be reopened (CONN_MAX_AGE, the server's idle limit).",
        ("alias", "reason"),
    ),
    Counted(
        signals.statement_retried,
        "retries",
        "Statements run again on a fresh connection.",
        ("alias", "reason"),
    ),
    Counted(
        signals.retry_refused,
        "refused_retries",
        "Statements not retried after a disconnect (the log says why).",
        ("alias",),
    ),
    Counted(
        signals.fork_detected,
        "forks",
        "Inherited connections dropped in a forked child.",
        ("alias",),
    ),
)
# Observed when a connection is found dead: the signal's kwarg, and what it shows.
HISTOGRAMS = (
    (
        "idle",
        "How long a connection had been idle when it was found dead: the real idle limit of "
        "the server, proxy or load balancer shows as the bucket where failures start.",
    ),
    ("age", "How old a connection was when it was found dead."),
)
HISTOGRAM_LABELS = ("alias", "reason")
# Seconds. Edges at the common limits (Azure LB 240, AWS NLB 350, MySQL's
# wait_timeout 28800): failures past a limit land in the bucket above it.
BUCKETS = (
    *(1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 240.0, 300.0, 350.0, 600.0),
    *(900.0, 1800.0, 3600.0, 7200.0, 28800.0, 86400.0),
)


def labels(names: tuple[str, ...], kwargs: dict[str, Any]) -> dict[str, str]:
    values = {
        "alias": kwargs["alias"],
        "reason": kwargs["reason"],
        "outcome": "ok" if kwargs.get("ok") else "failed",
        "address": kwargs.get("address") or "",
    }
    return {name: str(values[name]) for name in names}


class Exporter:
    """Counts and observes what the signals report; subclasses own the instruments."""

    def __init__(self) -> None:
        self._uid = f"connguard-metrics-{type(self).__module__}"
        self._receivers = [(spec, self._receiver(spec)) for spec in COUNTERS]

    def count(self, spec: Counted, labels: dict[str, str]) -> None:
        raise NotImplementedError

    def observe(self, kind: str, labels: dict[str, str], seconds: float) -> None:
        raise NotImplementedError

    def _receiver(self, spec: Counted) -> Callable[..., None]:
        def receive(sender: Any, **kwargs: Any) -> None:
            self.count(spec, labels(spec.labels, kwargs))
            if spec.signal is signals.connection_invalidated:
                for kind, _ in HISTOGRAMS:
                    self.observe(kind, labels(HISTOGRAM_LABELS, kwargs), kwargs[kind])

        return receive

    def connect(self) -> None:
        for spec, receiver in self._receivers:
            spec.signal.connect(receiver, weak=False, dispatch_uid=(self._uid, spec.name))

    def disconnect(self) -> None:
        for spec, _ in self._receivers:
            spec.signal.disconnect(dispatch_uid=(self._uid, spec.name))


AnExporter = TypeVar("AnExporter", bound=Exporter)


class Installation(Generic[AnExporter]):
    """The one exporter of a kind that is fed at a time, and where it reports to."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.lock = threading.Lock()
        self.target: object = None
        self.exporter: AnExporter | None = None

    def install(self, target: object, make: Callable[[], AnExporter]) -> AnExporter:
        with self.lock:
            if self.exporter is None:
                self.exporter, self.target = make(), target
                self.exporter.connect()
            elif self.target is not target:
                raise RuntimeError(
                    f"connguard's {self.kind} metrics are installed already, elsewhere: "
                    "call uninstall() first"
                )
            return self.exporter

    def uninstall(self) -> AnExporter | None:
        """Stop feeding the exporter; return it (None if none was installed)."""
        with self.lock:
            exporter, self.exporter, self.target = self.exporter, None, None
            if exporter is not None:
                exporter.disconnect()
            return exporter

"""What the checks know of an alias from its settings alone: no connection is opened."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from connguard.conf import OPTIONS_KEY, GuardOptions, parse_options

VENDORS = ("mysql", "postgresql")
GUARDED_ENGINES = {
    "mysql": "connguard.db.backends.mysql",
    "postgresql": "connguard.db.backends.postgresql",
}
_VENDOR_OF_ENGINE = {engine: vendor for vendor, engine in GUARDED_ENGINES.items()}


@dataclass(frozen=True)
class AliasInfo:
    """An alias as the checks see it."""

    alias: str
    settings: Mapping[str, Any]
    vendor: str | None  # None: a connguard ENGINE that cannot be loaded, of no known vendor
    guarded: bool  # the ENGINE's wrapper has the guard (it may be disabled)
    options: GuardOptions | None  # None when unguarded or invalid
    error: str | None  # why OPTIONS["connguard"] is invalid
    # Why a connguard ENGINE cannot be loaded (a missing driver, a typo): connguard.E003.
    engine_error: str | None = None

    @property
    def active(self) -> bool:
        return self.options is not None and self.options.enabled

    @property
    def broken(self) -> bool:
        """Its settings alone stop it from connecting (connguard.E001, E002 or E003)."""
        stray = not self.guarded and OPTIONS_KEY in (self.settings.get("OPTIONS") or {})
        return self.error is not None or self.engine_error is not None or stray

    @property
    def pooled(self) -> bool:
        """Django's PostgreSQL pool (``OPTIONS["pool"]``), which needs ``CONN_MAX_AGE = 0``."""
        return bool((self.settings.get("OPTIONS") or {}).get("pool"))

    @property
    def max_age(self) -> float | None:
        """``CONN_MAX_AGE`` in seconds; None means forever."""
        max_age = self.settings.get("CONN_MAX_AGE", 0)
        return None if max_age is None else float(max_age)

    def outlives(self, limit: float) -> bool:
        """Whether Django's own rules keep a connection for ``limit`` seconds or more.

        ``CONN_MAX_AGE = 0`` closes it at the end of each request: no (what that
        means for workers is connguard.W001's business).
        """
        return self.max_age is None or (self.max_age > 0 and self.max_age >= limit)


def describe(alias: str, settings_dict: Mapping[str, Any]) -> AliasInfo | None:
    """Load the alias's backend class (no connection).

    None if an ENGINE that is not connguard's cannot be loaded: that alias is
    not connguard's business. A connguard ENGINE that cannot be loaded is
    described, with ``engine_error`` set.
    """
    from django.db.utils import load_backend

    from connguard.db.backends.base.base import GuardedWrapperMixin

    engine = settings_dict.get("ENGINE", "")
    try:
        wrapper_class = load_backend(engine).DatabaseWrapper
    except (ImproperlyConfigured, ImportError) as exc:
        if not str(engine).startswith("connguard."):
            return None
        return AliasInfo(
            alias,
            settings_dict,
            _VENDOR_OF_ENGINE.get(engine),
            guarded=False,
            options=None,
            error=None,
            engine_error=_load_error(exc),
        )
    guarded = issubclass(wrapper_class, GuardedWrapperMixin)
    options, error = None, None
    if guarded:
        try:
            options = parse_options(alias, settings_dict)
        except ImproperlyConfigured as exc:
            error = str(exc)
    return AliasInfo(alias, settings_dict, wrapper_class.vendor, guarded, options, error)


def _load_error(exc: BaseException) -> str:
    """Django's error, without its advice about built-in backends, and the import error."""
    text = " ".join(str(exc).split())
    first = text.split(". ", 1)[0].rstrip(".") or type(exc).__name__
    cause = exc.__cause__
    return f"{first} ({cause})" if cause is not None and str(cause) else first

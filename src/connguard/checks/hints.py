"""What the messages of every connguard check share: names, wording and the docs link."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def hint(text: str, check_id: str) -> str:
    """``text``, then the section of ``docs/checks.md`` that explains ``check_id``."""
    return f"{text} See docs/checks.md#{check_id.replace('.', '').lower()}"


def key(alias: str, *path: str) -> str:
    """``DATABASES['alias']['KEY']...``, as a message names a setting."""
    return f"DATABASES[{alias!r}]" + "".join(f"[{part!r}]" for part in path)


def lasting(seconds: float | None) -> str:
    return "forever" if seconds is None else f"for {seconds:g}s"


def below(limit: float) -> float:
    """A round value safely under ``limit``, for hints."""
    return float(max(int(limit - 10), int(limit // 2), 1))


def where(settings_dict: Mapping[str, Any]) -> str:
    """The alias's server address, as ``host:port`` (never a user or a password)."""
    host = settings_dict.get("HOST") or "local socket"
    return f"{host}:{settings_dict.get('PORT') or 'default port'}"

"""Pure logic in connguard._drivers: reading PostgreSQL's time settings.

The real-server side (the value each server reports, read at connect) is in
tests/backends/test_guard.py.
"""

from __future__ import annotations

import pytest

from connguard._drivers import pg_time_setting


@pytest.mark.parametrize(
    ("shown", "seconds"),
    [
        ("0", 0.0),
        ("250", 0.25),  # no unit: milliseconds
        ("1500ms", 1.5),
        ("1s", 1.0),
        ("1min", 60.0),
        ("90min", 5400.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("500us", 0.0005),
    ],
)
def test_pg_time_setting(shown: str, seconds: float) -> None:
    assert pg_time_setting(shown) == pytest.approx(seconds)


@pytest.mark.parametrize("shown", ["", "1 fortnight", "s", "1.2.3s"])
def test_pg_time_setting_rejects_what_it_cannot_read(shown: str) -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL time setting"):
        pg_time_setting(shown)

"""Skip the tests marked ``failover`` unless ``-m failover`` selects them.

They start a real Patroni cluster behind HAProxy and take tens of seconds, so
the default suite collects them but skips them; a marker expression that names
``failover`` (``-m failover``, ``-m "failover or postgresql"``) runs them, as
scripts/failover does. ``-m "not failover"`` deselects them as usual. The
replicated MariaDB starts in two seconds: its tests are not marked, and run in
the default suite.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item, not only this directory's.
    if "failover" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="the failover test bed runs only with -m failover")
    for item in items:
        if item.get_closest_marker("failover") is not None:
            item.add_marker(skip)

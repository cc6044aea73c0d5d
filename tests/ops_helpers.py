"""Helpers for the tests of the checks, the command, the plugin and the metrics."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import connections

from testbed.servers import free_port
from tests.helpers import ALIAS, GUARDED, STOCK

# A session idle limit of 60 s, set for each connection of an alias by its OPTIONS.
SESSION_LIMIT_60 = {
    "mysql": {"init_command": "SET SESSION wait_timeout = 60"},
    "postgresql": {"options": "-c idle_session_timeout=60000"},
}


@contextlib.contextmanager
def extra_alias(name: str, vendor: str, *, guarded: bool = True, **overrides: Any) -> Iterator[str]:
    """A DATABASES alias on the vendor's throwaway server, for the length of a block.

    ``port="closed"`` points it at a port where nothing listens.
    """
    base = copy.deepcopy(connections.settings[ALIAS[vendor]])
    base.pop("TEST", None)
    base["ENGINE"] = (GUARDED if guarded else STOCK)[vendor]
    base["OPTIONS"].update(overrides.pop("OPTIONS", {}))
    if overrides.pop("port", None) == "closed":
        base["PORT"] = str(free_port())
    base.update(overrides)
    settings.DATABASES[name] = connections.configure_settings({"default": base})["default"]
    try:
        yield name
    finally:
        for wrapper in connections.all(initialized_only=True):
            if wrapper.alias == name:
                with contextlib.suppress(Exception):
                    wrapper.close()
                del connections[name]
        del settings.DATABASES[name]


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]

"""A dropped wrapper is freed by reference counting, as Django's own is.

Django 6.0+ breaks the wrapper's reference cycles with ``__del__`` methods
(``test_release_memory_without_garbage_collection`` in its own suite), so a
wrapper dropped by an ASGI request or an ending thread is freed at once, with
its connection. The guard must not add a cycle of its own (a bound method of
the wrapper in its own ``execute_wrappers`` was one).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.db import connections
from django.db.utils import load_backend

from tests.helpers import ALIAS, GUARDED, STOCK, select_one

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.fixture
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    # Keep what the collector finds unreachable instead of freeing it: what
    # only a __del__ breaking a back-reference frees never shows up there.
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _garbage_of_a_dropped_wrapper(vendor: str, engine: str, *, query: bool) -> list[str]:
    settings_dict = dict(connections[ALIAS[vendor]].settings_dict)
    settings_dict.pop("TEST", None)
    wrapper: Any = load_backend(engine).DatabaseWrapper(settings_dict, f"release_{vendor}")
    with wrapper.wrap_database_errors:
        if query:
            assert select_one(wrapper) == 1
    wrapper.close()
    wrapper = None
    gc.garbage.clear()
    gc.collect()
    names = sorted({type(obj).__qualname__ for obj in gc.garbage})
    gc.garbage.clear()
    return names


@pytest.mark.skipif(
    django.VERSION < (6, 0), reason="Django 5.2's own wrapper is freed by the garbage collector"
)
@pytest.mark.parametrize("query", [False, True], ids=["unused", "used"])
def test_guarded_wrapper_is_freed_as_the_stock_one_is(
    vendor: str, no_gc: None, query: bool
) -> None:
    stock = _garbage_of_a_dropped_wrapper(vendor, STOCK[vendor], query=query)
    guarded = _garbage_of_a_dropped_wrapper(vendor, GUARDED[vendor], query=query)
    assert (stock, guarded) == ([], [])

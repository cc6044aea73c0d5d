"""CONN_HEALTH_CHECKS on the guarded backends, as Django's own test suite checks it
on the stock ones (backends.base.test_base.ConnectionHealthChecksTests).

Django asks ``is_usable()`` at the first use after ``close_if_unusable_or_obsolete()``
re-armed the check (once per request), and replaces the connection if it says no.
A project's backend may override ``is_usable()`` to refuse more than a dead
connection (a server that became a read-only standby after a failover, say): the
guard must ask it as Django would. Django's own ``is_usable()`` is only a ping,
which the guard's checks already cover, so that one costs no round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import connguard
from testbed.proxy import Proxy
from tests.helpers import make_wrapper, select_one, server_id

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


@pytest.fixture
def project_wrapper(vendor: str) -> Iterator[Callable[..., Any]]:
    """A guarded wrapper whose class overrides is_usable(), as a project's backend may."""
    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        template = make_wrapper(vendor, alias="project", **overrides)

        class ProjectWrapper(type(template)):  # type: ignore[misc]
            refuse: type[BaseException] | bool = False
            asked = 0

            def is_usable(self) -> bool:
                self.asked += 1
                if isinstance(self.refuse, type):
                    raise self.refuse("interrupted in is_usable()")
                return not self.refuse and bool(super().is_usable())

        wrapper = ProjectWrapper(template.settings_dict, template.alias)
        made.append(wrapper)
        return wrapper

    yield make
    for wrapper in made:
        wrapper.close()


def new_request(wrapper: Any) -> None:
    """What request_started and request_finished do: close_old_connections()."""
    wrapper.close_if_unusable_or_obsolete()


def test_is_usable_of_a_subclass_is_asked_once_per_request(project_wrapper: Any) -> None:
    wrapper = project_wrapper(CONN_HEALTH_CHECKS=True)
    select_one(wrapper)
    assert wrapper.asked == 0  # a new connection is healthy without a check
    first = server_id(wrapper)
    new_request(wrapper)
    wrapper.refuse = True
    select_one(wrapper)
    assert wrapper.asked == 1
    second = server_id(wrapper)
    assert second != first
    select_one(wrapper)  # once per request: the new connection is not asked again
    assert (wrapper.asked, server_id(wrapper)) == (1, second)
    stats = connguard.stats("project")
    assert stats["validations_failed"] == 1
    assert stats["replaced_validation_failed"] == 1
    wrapper.refuse = False
    new_request(wrapper)
    select_one(wrapper)
    assert (wrapper.asked, server_id(wrapper)) == (2, second)


def test_is_usable_is_asked_when_a_transaction_starts(project_wrapper: Any) -> None:
    wrapper = project_wrapper(CONN_HEALTH_CHECKS=True)
    select_one(wrapper)
    first = server_id(wrapper)
    new_request(wrapper)
    wrapper.refuse = True
    wrapper.set_autocommit(False)  # what the outermost atomic() does
    assert wrapper.asked == 1
    assert server_id(wrapper) != first
    select_one(wrapper)
    wrapper.commit()
    wrapper.set_autocommit(True)
    assert wrapper.asked == 1


def test_is_usable_is_not_asked_without_conn_health_checks(project_wrapper: Any) -> None:
    wrapper = project_wrapper(CONN_HEALTH_CHECKS=False)
    select_one(wrapper)
    first = server_id(wrapper)
    new_request(wrapper)
    wrapper.refuse = True
    select_one(wrapper)
    assert (wrapper.asked, server_id(wrapper)) == (0, first)


def test_interrupted_is_usable_leaves_the_connection_to_be_replaced(project_wrapper: Any) -> None:
    wrapper = project_wrapper(CONN_HEALTH_CHECKS=True)
    select_one(wrapper)
    first = server_id(wrapper)
    new_request(wrapper)
    wrapper.refuse = KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        select_one(wrapper)
    wrapper.refuse = False
    select_one(wrapper)  # the check is done for this request; the guard replaces it
    assert server_id(wrapper) != first
    assert connguard.stats("project")["replaced_error"] == 1


def bytes_for_requests(proxy: Proxy, wrapper: Any, count: int = 20) -> int:
    select_one(wrapper)
    proxy.reset_counters()
    for _ in range(count):
        new_request(wrapper)
        select_one(wrapper)
    return proxy.bytes_up


def test_django_s_own_is_usable_costs_no_round_trip(vendor: str, proxy: Proxy) -> None:
    over_proxy = {"HOST": proxy.host, "PORT": str(proxy.port)}
    checked = make_wrapper(vendor, alias="checked", CONN_HEALTH_CHECKS=True, **over_proxy)
    plain = make_wrapper(vendor, alias="plain", **over_proxy)
    stock = make_wrapper(vendor, guarded=False, CONN_HEALTH_CHECKS=True, **over_proxy)
    # The guard's checks cover a bare ping: byte for byte the same as without the
    # setting, where the stock backend pings at every request.
    assert bytes_for_requests(proxy, checked) == bytes_for_requests(proxy, plain)
    assert bytes_for_requests(proxy, stock) > bytes_for_requests(proxy, plain)
    assert "validations" not in connguard.stats("checked")

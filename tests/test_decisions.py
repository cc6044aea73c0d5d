"""Every rule of the README's two tables, as the decision functions see it: no server.

The same rules run against real servers in tests/backends (docs/how-it-works.md
names the test of each); here each is pinned on its own, with the state built
by hand.
"""

from __future__ import annotations

import select

import pymysql

import connguard
from connguard._events import Reason
from connguard.db.backends.base import decisions
from connguard.db.backends.base.state import Action, AliasState, AutocommitLost, GuardState
from connguard.exceptions import (
    CLOSED_IN_TRANSACTION,
    DEAD_BEFORE_COMMIT,
    EXECUTEMANY_REFUSAL,
    GONE_BEFORE_COMMIT,
    LOST_IN_SETUP,
    RETRY_FAILED,
    WRONG_NODE,
    CommitOutcomeUnknown,
    ConnectionLost,
    OutcomeUnknown,
    TransactionLost,
)

NOW = 1000.0
READABLE = [(7, select.POLLIN)]
HUNG_UP = [(7, select.POLLIN | select.POLLHUP)]


def state(*, idle: float = 0.0, **fields: object) -> GuardState:
    """A connection opened at 0, last used ``idle`` seconds before NOW, 10 s validate_after."""
    limits = {"server_timeout": fields.pop("server_timeout", None), "validate_after": 10.0}
    if "validate_after" in fields:
        limits["validate_after"] = fields.pop("validate_after")  # type: ignore[assignment]
    made = GuardState(last_used=NOW - idle, **fields)  # type: ignore[arg-type]
    made.set_limits(limits["server_timeout"], limits["validate_after"])  # type: ignore[arg-type]
    return made


def before(made: GuardState, events: object = None, check_due: bool = False) -> object:
    return decisions.before_use(made, NOW, events, check_due)  # type: ignore[arg-type]


# ##### Before use: the first table #####


def test_busy_path_uses_the_connection_and_records_the_use() -> None:
    made = state(idle=2.0)
    assert before(made) is None
    assert made.last_used == NOW
    assert made.idle == 2.0


def test_a_dead_connection_is_replaced_whatever_else_holds() -> None:
    assert before(state(dead=True)) == (Action.REPLACE, Reason.ERROR)
    assert before(state(dead=True), READABLE) == (Action.REPLACE, Reason.ERROR)


def test_older_than_conn_max_age_is_recycled() -> None:
    assert before(state(close_at=NOW)) == (Action.REPLACE, Reason.MAX_AGE)
    assert before(state(close_at=NOW + 1)) is None


def test_idle_past_the_server_limit_is_recycled_without_a_ping() -> None:
    assert before(state(idle=60.0, server_timeout=60.0)) == (Action.REPLACE, Reason.SERVER_TIMEOUT)
    assert before(state(idle=5.0, server_timeout=60.0)) is None


def test_a_hung_up_socket_is_replaced_before_anything_is_sent() -> None:
    assert before(state(), HUNG_UP) == (Action.REPLACE, Reason.SOCKET_CLOSED)


def test_data_on_an_idle_socket_is_pinged_first() -> None:
    assert before(state(), READABLE) == (Action.PING, Reason.SOCKET_READABLE)


def test_idle_past_validate_after_is_pinged() -> None:
    assert before(state(idle=10.0)) == (Action.PING, Reason.IDLE)
    assert before(state(idle=9.9)) is None
    assert before(state(idle=3600.0, validate_after=None)) is None


def test_the_checks_run_in_the_readmes_order() -> None:
    everything = state(idle=100.0, close_at=NOW, server_timeout=60.0)
    assert before(everything, HUNG_UP) == (Action.REPLACE, Reason.MAX_AGE)
    assert before(state(idle=100.0, server_timeout=60.0), HUNG_UP)[1] is Reason.SERVER_TIMEOUT  # type: ignore[index]
    assert before(state(idle=100.0), HUNG_UP)[1] is Reason.SOCKET_CLOSED  # type: ignore[index]


def test_a_failed_ping_replaces_and_a_good_one_uses() -> None:
    assert decisions.after_ping(False, False) == (Action.REPLACE, Reason.VALIDATION_FAILED)
    assert decisions.after_ping(True, False) == (Action.USE, None)


def test_conn_health_checks_asks_is_usable_once_nothing_else_is_due() -> None:
    assert before(state(), check_due=True) == (Action.CHECK, None)
    assert decisions.after_ping(True, True) == (Action.CHECK, None)
    assert before(state(close_at=NOW), check_due=True) == (Action.REPLACE, Reason.MAX_AGE)


def test_is_usable_is_asked_only_when_it_is_not_djangos_bare_ping() -> None:
    from django.db.backends.mysql.base import DatabaseWrapper

    class Standby(DatabaseWrapper):  # type: ignore[misc]
        def is_usable(self) -> bool:
            return False

    stock = DatabaseWrapper.is_usable.__get__(object())
    mine = Standby.is_usable.__get__(object())
    assert not decisions.asks_is_usable(False, stock)
    assert decisions.asks_is_usable(False, mine)
    assert not decisions.asks_is_usable(True, mine)  # with a pool, Django leaves it to the pool
    assert decisions.asks_is_usable(False, lambda: True)  # a test's replacement


def test_conn_max_age_zero_and_none_set_no_deadline() -> None:
    for max_age in (0, None):
        made = GuardState()
        decisions.connected(made, NOW, max_age)
        assert made.close_at is None and made.connected_at == made.last_used == NOW
    decisions.connected(made, NOW, 60)
    assert made.close_at == NOW + 60


# ##### Inside a transaction: nothing is replaced #####


def test_inside_a_transaction_nothing_is_replaced_and_a_dead_one_is_refused() -> None:
    assert decisions.in_transaction(state(idle=3600.0, close_at=0.0), NOW, False) is None
    assert decisions.in_transaction(state(dead=True), NOW, False) == TransactionLost.default_reason
    assert decisions.in_transaction(state(), NOW, True) == CLOSED_IN_TRANSACTION


def test_commit_is_not_sent_on_a_dead_or_hung_up_connection() -> None:
    assert decisions.before_commit(state(), None) is None
    assert decisions.before_commit(state(), READABLE) is None
    assert decisions.before_commit(state(dead=True), None) == DEAD_BEFORE_COMMIT
    hung_up = state()
    assert decisions.before_commit(hung_up, HUNG_UP) == GONE_BEFORE_COMMIT
    assert hung_up.dead


def test_rollback_on_a_dead_connection_is_not_sent() -> None:
    assert decisions.sends_rollback(state())
    assert not decisions.sends_rollback(state(dead=True))


def test_autocommit_lost() -> None:
    assert decisions.autocommit_lost(True, True) is AutocommitLost.RAISE
    assert decisions.autocommit_lost(False, True) is AutocommitLost.RAISE
    assert decisions.autocommit_lost(True, False) is AutocommitLost.CLOSE
    assert decisions.autocommit_lost(False, False) is AutocommitLost.REOPEN


# ##### After a failure: the second table #####


def disconnect(
    made: GuardState, *, in_transaction: bool = False, has_connection: bool = True
) -> object:
    return decisions.on_disconnect(
        made, has_connection=has_connection, in_transaction=in_transaction
    )


def test_a_disconnect_marks_the_connection_dead() -> None:
    made = state()
    assert disconnect(made) == (ConnectionLost, None)
    assert made.dead


def test_inside_a_transaction_a_disconnect_is_transaction_lost() -> None:
    assert disconnect(state(), in_transaction=True) == (TransactionLost, None)


def test_a_commit_whose_reply_was_lost_is_commit_outcome_unknown() -> None:
    assert disconnect(state(in_commit=True), in_transaction=True) == (CommitOutcomeUnknown, None)


def test_lost_in_session_setup_and_in_connect() -> None:
    assert disconnect(state(connecting=True)) == (ConnectionLost, LOST_IN_SETUP)
    assert disconnect(state(connecting=True), has_connection=False) is None


def test_an_interruption_marks_a_live_connection_dead_once() -> None:
    made = state()
    assert decisions.on_interrupt(made, True) is True
    assert made.dead
    assert decisions.on_interrupt(made, True) is False  # told once
    assert decisions.on_interrupt(state(), False) is False
    assert decisions.on_interrupt(state(connecting=True), True) is False


LOST = ConnectionLost(2013, "Lost connection to server during query")


def retry(sql: object = "UPDATE t SET x = 1", *, many: bool = False, never: bool = False) -> object:
    return decisions.retry(LOST, state(), sql, many, never)


def test_marked_idempotent_is_retried() -> None:
    with connguard.idempotent():
        assert retry() == (True, Reason.IDEMPOTENT)
        assert retry(many=True) == (True, Reason.IDEMPOTENT)


def test_an_error_that_proves_it_never_ran_is_retried() -> None:
    assert retry(never=True) == (True, Reason.NEVER_EXECUTED)


def test_a_read_only_statement_is_retried() -> None:
    assert retry("SELECT 1") == (True, Reason.READ_ONLY)
    assert retry("SELECT id FROM t FOR UPDATE") == (False, OutcomeUnknown.default_reason)


def test_any_other_statement_is_outcome_unknown() -> None:
    assert retry() == (False, OutcomeUnknown.default_reason)
    assert retry(object()) == (False, OutcomeUnknown.default_reason)  # sql.Composed: a write


def test_executemany_is_outcome_unknown_even_if_it_never_ran() -> None:
    assert retry("INSERT INTO t VALUES (%s)", many=True, never=True) == (False, EXECUTEMANY_REFUSAL)


def test_nothing_is_retried_inside_a_transaction_or_connect() -> None:
    for lost in (TransactionLost(), CommitOutcomeUnknown(), OutcomeUnknown()):
        assert decisions.retry(lost, state(), "SELECT 1", False, True) is None
    assert decisions.retry(LOST, state(connecting=True), "SELECT 1", False, True) is None


def test_a_retry_that_fails_too_is_connection_lost() -> None:
    assert decisions.after_retry(ConnectionLost()) == RETRY_FAILED
    assert decisions.after_retry(OutcomeUnknown()) is None
    assert decisions.after_retry(TransactionLost()) is None


def test_the_driver_fact_reaches_the_rule() -> None:
    from connguard._drivers import PyMySQLDriver

    unsent = pymysql.err.OperationalError(2006, "MySQL server has gone away")
    lost = pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")
    assert retry(never=PyMySQLDriver().never_executed(unsent)) == (True, Reason.NEVER_EXECUTED)
    assert retry(never=PyMySQLDriver().never_executed(lost)) == (
        False,
        OutcomeUnknown.default_reason,
    )


# ##### At a job boundary #####


def boundary(
    *, dead: bool = False, errors: bool = False, usable: bool = True, close_at: float | None = None,
    max_age_closes: bool = True,
) -> object:  # fmt: skip
    asked: list[bool] = []

    def is_usable() -> bool:
        asked.append(True)
        return usable

    verdict = decisions.at_boundary(dead, errors, is_usable, close_at, NOW, max_age_closes)
    return verdict, bool(asked)


def test_at_a_boundary_a_dead_connection_closes_without_a_ping() -> None:
    assert boundary(dead=True, errors=True) == ((Reason.ERROR, False), False)


def test_at_a_boundary_an_error_asks_is_usable() -> None:
    assert boundary(errors=True, usable=False) == ((Reason.UNUSABLE, False), True)
    assert boundary(errors=True) == ((None, True), True)  # usable: errors_occurred cleared
    assert boundary() == ((None, False), False)


def test_at_a_boundary_conn_max_age_closes_only_when_it_may() -> None:
    assert boundary(close_at=NOW) == ((Reason.MAX_AGE, False), False)
    assert boundary(close_at=NOW, max_age_closes=False) == ((None, False), False)
    assert boundary(close_at=NOW + 1) == ((None, False), False)


# ##### Failover: a node that turned read-only #####


def test_a_read_only_refusal_is_a_loss_that_never_ran() -> None:
    made = state()
    assert decisions.on_wrong_node(made, NOW, in_transaction=False) == (ConnectionLost, WRONG_NODE)
    assert made.dead and made.dead_why is Reason.READ_ONLY
    assert before(made) == (Action.REPLACE, Reason.READ_ONLY)
    inside = state()
    assert decisions.on_wrong_node(inside, NOW, in_transaction=True) == (
        TransactionLost,
        WRONG_NODE,
    )


def test_a_write_refused_by_a_read_only_node_is_retried_even_in_a_batch() -> None:
    made = state()
    decisions.on_wrong_node(made, NOW, in_transaction=False)
    assert decisions.retry(LOST, made, "INSERT INTO t VALUES (%s)", True, False) == (
        True,
        Reason.NEVER_EXECUTED,
    )


def test_one_finding_makes_every_connection_of_the_alias_check_its_node() -> None:
    shared = AliasState()
    finder, other = state(shared=shared), state(shared=shared)
    decisions.connected(finder, NOW, None)
    decisions.connected(other, NOW, None)
    assert before(other) is None
    decisions.on_wrong_node(finder, NOW, in_transaction=False)
    assert before(other) == (Action.ROLE, Reason.READ_ONLY)
    assert decisions.after_role(other, False, False) == (Action.USE, None)
    assert before(other) is None  # known right again: the busy path
    decisions.on_wrong_node(finder, NOW, in_transaction=False)
    assert before(other) == (Action.ROLE, Reason.READ_ONLY)
    assert decisions.after_role(other, True, False) == (Action.REPLACE, Reason.READ_ONLY)
    assert state(shared=AliasState()).generation == 0  # another alias: untouched


def test_an_alias_meant_to_write_refuses_a_read_only_node_at_connect() -> None:
    assert decisions.refuses_node("primary", True)
    assert not decisions.refuses_node("primary", False)
    assert not decisions.refuses_node("primary", None)  # not known: its first refusal tells
    assert not decisions.refuses_node("replica", True)


def test_connects_wait_with_backoff_and_jitter_inside_the_window_only() -> None:
    shared = AliasState()
    assert decisions.connect_wait(shared, NOW, 0, 30.0) is None  # no failover under way
    decisions.open_window(shared, NOW)
    waits = [
        decisions.connect_wait(shared, NOW, attempt, 30.0, lambda: 1.0) for attempt in range(8)
    ]
    assert waits == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]  # doubling, capped at 2 s
    assert decisions.connect_wait(shared, NOW, 3, 30.0, lambda: 0.5) == 0.2  # full jitter
    assert decisions.connect_wait(shared, NOW + 29.5, 9, 30.0, lambda: 1.0) == 0.5  # what is left
    assert decisions.connect_wait(shared, NOW + 30.0, 0, 30.0) is None  # the window is over
    assert decisions.connect_wait(shared, NOW, 0, 0.0) is None  # failover_timeout 0: no wait
    decisions.open_window(shared, NOW + 10)
    assert shared.failing_since == NOW  # later findings do not extend it
    decisions.close_window(shared)
    assert decisions.connect_wait(shared, NOW + 1, 0, 30.0) is None

"""Exceptions raised by the guarded backends.

All of them subclass ``django.db.OperationalError``, so an existing
``except OperationalError`` keeps working. They keep the driver's ``args``
(``e.args[0] == 2006`` still holds) and chain the driver exception as
``__cause__``; only ``str()`` changes, to name the alias, why nothing was
retried, and what happens next.
"""

from __future__ import annotations

from typing import Any

from django.db.utils import OperationalError


class ConnectionLost(OperationalError):
    """The connection died outside a transaction and the statement was not retried.

    The connection is replaced at its next use.
    """

    default_reason = (
        "not retried: it was lost outside a statement's execution (while fetching rows "
        "or changing the transaction state), where a retry could repeat or skip work"
    )
    next_step = "the connection is replaced at its next use"

    def __init__(
        self, *args: Any, alias: str = "", vendor: str = "", reason: str | None = None
    ) -> None:
        super().__init__(*args)
        self.alias = alias
        self.vendor = vendor
        self.reason = reason or self.default_reason

    def __str__(self) -> str:
        cause = f": {super().__str__()}" if self.args else ""
        return (
            f"connection {self.alias!r} ({self.vendor}) was lost{cause}; "
            f"{self.reason}; {self.next_step}"
        )


class OutcomeUnknown(ConnectionLost):
    """The connection died after a statement was sent: it may or may not have run.

    Never retried, since running a write twice could apply it twice.
    """

    default_reason = (
        "outcome unknown: the connection was lost after the statement was sent, so it "
        "may or may not have run, and it was not retried"
    )


class TransactionLost(ConnectionLost):
    """The connection died inside ``atomic()`` or another open transaction.

    The server rolls the transaction back when the session ends, so nothing in
    it was committed. Nothing is retried inside a transaction: the block fails,
    and the first use after it gets a fresh connection.
    """

    default_reason = (
        "inside a transaction: the server rolled the transaction back and nothing in it "
        "was committed; nothing is retried inside a transaction"
    )
    next_step = "the connection is replaced at its first use after the transaction"


class CommitOutcomeUnknown(TransactionLost):
    """The connection died while ``COMMIT`` was in flight.

    The server may or may not have committed: check before you redo the work.
    Never retried.
    """

    default_reason = (
        "commit outcome unknown: the connection was lost while COMMIT was in flight, so "
        "the transaction may or may not have been committed; a COMMIT is never retried"
    )
    next_step = "the connection is replaced at its next use"


# The reasons, beside each class's default, that the guard gives
# (connguard.db.backends.base.decisions says when).
GONE_BEFORE_COMMIT = (
    "the server had closed the connection before COMMIT was sent, so it rolled the "
    "transaction back and nothing in it was committed; COMMIT was not sent"
)
DEAD_BEFORE_COMMIT = (
    "an earlier error or interruption left the connection unusable inside the "
    "transaction, so COMMIT was not sent and nothing was committed"
)
LOST_IN_SETUP = (
    "lost during Django's session setup (init_connection_state() or a connection_created "
    "receiver), before any statement of yours was sent"
)
CLOSED_IN_TRANSACTION = (
    "the connection was closed inside the transaction (connection.close() in atomic(), or "
    "an error that closed it), so the server rolled the transaction back and nothing in it "
    "was committed"
)
EXECUTEMANY_REFUSAL = (
    "outcome unknown: executemany() may have applied part of its batch before the "
    "connection was lost; it is retried only when marked connguard.idempotent()"
)
RETRY_FAILED = "retried once on a fresh connection, and the retry failed too"
WRONG_NODE = (
    "not run: the node refused it because it is read-only, so the alias's primary has moved "
    "(a failover or a switchover)"
)


class FailoverTimeout(ConnectionLost):
    """No writable node answered within the alias's ``failover_timeout``.

    Raised when a connection to an alias meant to write keeps landing on a
    read-only node, or keeps being refused, after the guard found the alias's
    node read-only. Names the alias, the node and how long it waited.
    """

    default_reason = "no writable node took the connection"
    next_step = "the next use tries again"

    def __init__(
        self, *args: Any, alias: str = "", vendor: str = "", node: str = "", waited: float = 0.0,
        failover_timeout: float = 0.0,
    ) -> None:  # fmt: skip
        self.node, self.waited, self.failover_timeout = node, waited, failover_timeout
        reason = (
            f"no writable node at {node or 'its address'} after waiting {waited:.1f}s "
            f"(failover_timeout {failover_timeout:g}s)"
        )
        super().__init__(*args, alias=alias, vendor=vendor, reason=reason)

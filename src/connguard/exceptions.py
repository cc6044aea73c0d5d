"""Exceptions raised by the guarded backends.

All of them subclass ``django.db.OperationalError``, so an existing
``except OperationalError`` keeps working. They keep the driver's ``args``
(``e.args[0] == 2006`` still holds) and chain the driver exception as
``__cause__``; only ``str()`` changes, to name the alias and what happens next.
"""

from __future__ import annotations

from typing import Any

from django.db.utils import OperationalError


class ConnectionLost(OperationalError):
    """The connection died under a statement run outside a transaction.

    Nothing is retried. The connection is replaced at its next use.
    """

    explanation = "it will be replaced at its next use"

    def __init__(self, *args: Any, alias: str = "", vendor: str = "") -> None:
        super().__init__(*args)
        self.alias = alias
        self.vendor = vendor

    def __str__(self) -> str:
        return (
            f"connection {self.alias!r} ({self.vendor}) was lost: "
            f"{super().__str__()}; {self.explanation}"
        )


class TransactionLost(ConnectionLost):
    """The connection died inside ``atomic()`` or another open transaction.

    The server rolls the transaction back when the session ends, so nothing in
    it was committed. Nothing is retried inside the transaction: the block fails,
    and the first use after it gets a fresh connection.
    """

    explanation = (
        "the open transaction was rolled back by the server and nothing in it was "
        "committed; the connection is replaced at its first use after the transaction"
    )


class CommitOutcomeUnknown(TransactionLost):
    """The connection died while ``COMMIT`` was in flight.

    The server may or may not have committed: check before you redo the work.
    Never retried.
    """

    explanation = (
        "the connection was lost while COMMIT was in flight, so the transaction may "
        "or may not have been committed; the connection is replaced at its next use"
    )

"""Signals sent by the guard, named after SQLAlchemy's pool events where one fits.

Every signal is sent with ``sender`` = the wrapper's class and these keyword
arguments:

``connection``
    The ``DatabaseWrapper``.
``alias``
    The ``DATABASES`` alias.
``reason``
    A short string: what happened, or why (see each signal).
``idle``
    Seconds the connection had been idle when this use began.
``age``
    Seconds since the connection was opened.
``error``
    The exception involved, or ``None``.
``address``
    ``host:port`` of the server the connection reached (else the alias's
    settings'), or ``None``.

They are sent only on events, never on the per-use fast path, so a receiver
costs nothing while connections are healthy. With no receivers, sending is a
no-op.
"""

from __future__ import annotations

from django.dispatch import Signal

#: A connection was pinged before use. ``reason``: ``"idle"`` (idle past
#: ``validate_after``) or ``"socket_readable"``; extra keyword ``ok``: bool.
connection_validated = Signal()

#: A connection was found dead. ``reason``: ``"disconnect"`` (a driver error),
#: ``"interrupted"`` (an exception escaped a driver call), ``"socket_closed"``,
#: ``"validation_failed"``, or ``"read_only"`` (on a read-only node, on an alias
#: meant to write: a failover's leftover).
connection_invalidated = Signal()

#: A dead connection was closed so that its next use opens a new one (through
#: Django's ``connect()``). ``reason``: ``"error"``, ``"socket_closed"``,
#: ``"validation_failed"``, ``"read_only"``.
connection_replaced = Signal()

#: A healthy connection was closed to be reopened, as ``pool_recycle`` does.
#: ``reason``: ``"max_age"`` (older than ``CONN_MAX_AGE``) or
#: ``"server_timeout"`` (idle past the server's own idle limit).
connection_recycled = Signal()

#: A statement was run again on a fresh connection. ``reason``:
#: ``"never_executed"``, ``"read_only"`` or ``"idempotent"``.
statement_retried = Signal()

#: A statement was not retried. ``reason``: why, as in the exception message.
retry_refused = Signal()

#: In a forked child, an inherited connection was dropped without any I/O.
#: ``reason``: ``"fork"``.
fork_detected = Signal()

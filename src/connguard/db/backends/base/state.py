"""What the guard knows: one ``GuardState`` per wrapper, one ``AliasState`` per alias.

``decisions.py`` reads and changes them; nothing else decides from them. The
``AliasState`` is shared by every wrapper of an alias in the process (one per
thread): a finding about the node (it is read-only: a failover happened) is
told to all of them through its ``generation``, which each wrapper compares
with its own at every use: two attribute reads, no lock.
"""

from __future__ import annotations

import enum
import select
import threading
from dataclasses import dataclass, field
from typing import Any

from connguard._events import Reason

# POLLRDHUP (Linux) reports a FIN from the server even before we read the EOF.
_RDHUP: int = getattr(select, "POLLRDHUP", 0)
POLL_MASK = select.POLLIN | select.POLLPRI | _RDHUP
HANGUP = select.POLLHUP | select.POLLERR | select.POLLNVAL | _RDHUP
_NEVER = float("inf")


@dataclass(slots=True)
class GuardState:
    """What the guard knows about one wrapper's connection: the whole of its state."""

    # A disconnect, an interruption, or a connect() that has not completed: the
    # connection is replaced at its next use outside a transaction, refused inside.
    dead: bool = False
    connecting: bool = False  # inside Django's connect(): never validated, never retried
    in_commit: bool = False  # a COMMIT is in flight
    last_used: float = 0.0  # time.monotonic() of the last use
    idle: float = 0.0  # how long it sat idle before this use
    connected_at: float = 0.0
    close_at: float | None = None  # CONN_MAX_AGE's deadline (None: 0 or forever)
    server_timeout: float | None = None  # the server's idle limit, in seconds
    poll: Any = None  # a select.poll() on the socket, or None without a socket check
    # The least idleness that needs a look: min(server_timeout, validate_after).
    first_limit: float = _NEVER
    validate_after: float | None = None  # the alias's option, kept here for the busy path
    checked_out: Any = None  # what pool.checkout() learnt of the pooled connection
    # Why it is dead: ERROR, or READ_ONLY for a connection on the wrong node.
    dead_why: Reason = Reason.ERROR
    read_only: bool | None = None  # the node's role, as read at connect (None: not known)
    shared: AliasState = field(default_factory=lambda: AliasState())
    generation: int = 0  # shared.generation when this connection was last known right

    def set_limits(self, server_timeout: float | None, validate_after: float | None) -> None:
        self.server_timeout, self.validate_after = server_timeout, validate_after
        limits = [limit for limit in (server_timeout, validate_after) if limit is not None]
        self.first_limit = min(limits, default=_NEVER)


class Action(enum.Enum):
    USE = "use"  # use the connection as it is
    PING = "ping"  # ping it first: after_ping() says what next
    CHECK = "check"  # ask is_usable() first (CONN_HEALTH_CHECKS, or an error at a boundary)
    REPLACE = "replace"  # close it; the next use opens a new one through connect()
    ROLE = "role"  # read the node's role first (the alias's node was found read-only)


Verdict = tuple[Action, Reason | None]

# Backoff between connects during a failover: 50 ms, doubling, at most 2 s.
BACKOFF_BASE = 0.05
BACKOFF_CAP = 2.0


class AutocommitLost(enum.Enum):
    """What to do when the connection was lost while changing autocommit."""

    RAISE = "raise"
    CLOSE = "close"  # the transaction has ended: losing the session loses nothing
    REOPEN = "reopen"  # nothing has happened in the transaction yet: start it afresh


@dataclass(slots=True)
class AliasState:
    """What every wrapper of one alias in this process shares."""

    # Moved on each finding that the alias's node is read-only: every
    # connection of the alias checks its node's role at its next use.
    generation: int = 0
    # When the failover under way was first found (time.monotonic()); 0.0: none
    # is. Connects are retried until each alias's failover_timeout after it,
    # and the first connect to a writable node ends it.
    failing_since: float = 0.0


_aliases: dict[str, AliasState] = {}
_lock = threading.Lock()


def alias_state(alias: str) -> AliasState:
    shared = _aliases.get(alias)
    if shared is None:
        with _lock:  # once per alias and process
            shared = _aliases.setdefault(alias, AliasState())
    return shared

"""When may a statement that failed because the connection died be run again?

Only outside a transaction (inside one, the error is already TransactionLost),
once, and only when running it twice cannot hurt:

================================================  ================================
the failed statement                              outcome
================================================  ================================
anything, under ``connguard.idempotent()``        retried
execute(): the error proves it never ran          retried
execute(): read-only (see ``connguard._sql``)     retried
executemany(), not marked idempotent              OutcomeUnknown (part of the batch may have run)
anything else                                     OutcomeUnknown
================================================  ================================
"""

from __future__ import annotations

from connguard._sql import is_read_only
from connguard.disconnects import never_executed
from connguard.exceptions import OutcomeUnknown
from connguard.retry import is_marked_idempotent

EXECUTEMANY_REFUSAL = (
    "outcome unknown: executemany() may have applied part of its batch before the "
    "connection was lost; it is retried only when marked connguard.idempotent()"
)


def retry_verdict(cause: BaseException | None, sql: object, many: bool) -> tuple[bool, str]:
    """(True, why it is safe) if the statement may be retried once, else (False, why not)."""
    if is_marked_idempotent():
        return True, "idempotent"
    if many:
        return False, EXECUTEMANY_REFUSAL
    if cause is not None and never_executed(cause):
        return True, "never_executed"
    # psycopg's sql.Composed and other non-strings cannot be inspected: a write.
    if isinstance(sql, str) and is_read_only(sql):
        return True, "read_only"
    return False, OutcomeUnknown.default_reason

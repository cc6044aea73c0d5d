from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from django.db.utils import DatabaseErrorWrapper
from django.db.utils import Error as DjangoError

if TYPE_CHECKING:
    from connguard.db.backends.base.base import GuardedWrapperMixin


class GuardedErrorWrapper(DatabaseErrorWrapper):
    """Django's error translation, plus disconnect detection.

    Every driver call Django makes (execute, fetch, commit, rollback, autocommit
    changes, close, connect) runs inside ``wrap_database_errors``, so this is
    the one place that sees every error: a disconnect marks the connection dead
    here, whichever path it came from.
    """

    wrapper: Any  # set by DatabaseErrorWrapper.__init__; untyped in django-stubs

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_value is None:
            # The common case, on every driver call: nothing to translate, and
            # no second frame for Django's __exit__, which would only return.
            return
        wrapper = cast("GuardedWrapperMixin", self.wrapper)
        if isinstance(exc_value, wrapper.Database.Error):
            replacement = wrapper._connguard_on_error(exc_value)
            if replacement is not None:
                wrapper.errors_occurred = True
                raise replacement.with_traceback(traceback) from exc_value
        elif not isinstance(exc_value, (DjangoError, GeneratorExit)):
            # Not the database's error: an exception from a signal handler
            # or a timeout escaped the driver mid-call.
            wrapper._connguard_on_interrupt(exc_value)
        super().__exit__(exc_type, exc_value, traceback)

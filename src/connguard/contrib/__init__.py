"""Task-queue integrations: job-boundary hygiene at each queue's own hooks.

One module per queue, each behind an extra of the same name
(``django-connguard[celery]``). Each imports its queue at the top, so nothing
in connguard imports these modules: your queue configuration does.
"""

from __future__ import annotations

"""RQ worker classes whose parent uses the database before each fork, like a
callback, a registry clean-up or user code would."""

from __future__ import annotations

import os
from typing import Any

import rq

import connguard.contrib.rq
from tests.workerproject import work


def _parent_connects() -> None:
    work.report({"parent": os.getpid(), "ids": {a: work.server_id(a) for a in work.ALIASES}})


class ParentConnectsWorker(connguard.contrib.rq.Worker):
    def execute_job(self, job: Any, queue: Any) -> None:
        _parent_connects()
        super().execute_job(job, queue)


class StockParentConnectsWorker(rq.Worker):
    def execute_job(self, job: Any, queue: Any) -> None:
        _parent_connects()
        super().execute_job(job, queue)

"""Job accounting: what the producer sent, what the workers reported, what the databases hold.

Reconciliation rules (README.md's retry rules):

* "done": exactly one row for the key.
* "failed" after the write was known committed (a later read failed): one row.
* "failed" with OutcomeUnknown / CommitOutcomeUnknown: the write may or may
  not have been applied, so 0 or 1 rows, never 2.
* any other "failed": 0 rows.
* no report at all: lost. Two reports for one key: a duplicate.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

UNKNOWN_OUTCOME = {"OutcomeUnknown", "CommitOutcomeUnknown"}


@dataclass
class Ledger:
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> job
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> its report
    extra_reports: list[dict[str, Any]] = field(default_factory=list)  # a second report
    _sent_by: Counter[str] = field(default_factory=Counter)
    _reported_by: Counter[str] = field(default_factory=Counter)

    def send(self, job: dict[str, Any]) -> None:
        self.sent[job["key"]] = job
        self._sent_by[job["worker"]] += 1

    def receive(self, report: dict[str, Any]) -> None:
        if report["key"] in self.reports:
            self.extra_reports.append(report)
            return
        self.reports[report["key"]] = report
        self._reported_by[report["worker"]] += 1

    def in_flight(self, worker: str) -> int:
        return self._sent_by[worker] - self._reported_by[worker]

    def missing(self) -> list[str]:
        return [key for key in self.sent if key not in self.reports]


@dataclass
class Reconciliation:
    done: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    duplicates: list[str] = field(default_factory=list)  # keys with 2+ rows or reports
    lost: list[str] = field(default_factory=list)  # keys never reported
    wrong: list[str] = field(default_factory=list)  # row count breaks the rules above
    examples: dict[str, str] = field(default_factory=dict)  # reason -> one message

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.lost or self.wrong)


def expected_rows(report: dict[str, Any]) -> set[int]:
    if report["status"] == "done" or report.get("written"):
        return {1}
    if report["reason"] in UNKNOWN_OUTCOME:
        return {0, 1}
    return {0}


def reconcile(ledger: Ledger, rows: dict[str, int]) -> Reconciliation:
    """``rows``: how many rows each key has, over every database."""
    result = Reconciliation()
    for key in ledger.sent:
        count = rows.get(key, 0)
        if count > 1:
            result.duplicates.append(key)
        report = ledger.reports.get(key)
        if report is None:
            result.lost.append(key)
            continue
        if report["status"] == "done":
            result.done += 1
        else:
            result.failed[report["reason"]] += 1
            result.examples.setdefault(report["reason"], report["message"])
        if count <= 1 and count not in expected_rows(report):
            result.wrong.append(f"{key}: {count} rows for {report}")
    result.duplicates += [r["key"] for r in ledger.extra_reports]
    unknown = set(rows) - set(ledger.sent)
    result.wrong += [f"{key}: a row for a key never sent" for key in sorted(unknown)]
    return result

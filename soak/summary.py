"""Recovery and detection times, and the table the soak prints at the end."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from soak.faults import FAILOVER_HOLD, Fault
from soak.ledger import Ledger, Reconciliation

# A job on a blackholed route must end (with an error) within this long: the
# drivers' timeouts are 3 s (topology.BLACKHOLE_OPTIONS), and one job makes at
# most a handful of blocking calls before its connection is marked dead.
DETECTION_BOUND = 20.0
# A failover, from the demotion: the guard finds a connection on the read-only
# node at the first job on an affected route (a few a second per route), and a
# write succeeds once a node takes writes again (FAILOVER_HOLD) plus the guard's
# connect backoff (capped at 2 s, with jitter) and the promotion. README.md says why.
FAILOVER_DETECTION_BOUND = 5.0
FAILOVER_RECOVERY_BOUND = FAILOVER_HOLD + 5.0


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"n": len(ordered), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99),
            "max": round(ordered[-1], 2)}  # fmt: skip


def recoveries(faults: list[Fault], ledger: Ledger) -> list[dict[str, float]]:
    """Per fault: from injection to each affected worker's first success afterwards.

    A worker is affected when it ran a job on one of the fault's routes after
    the injection; its recovery ends with its first "done" job on those routes
    that started after the injection.
    """
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for report in sorted(ledger.reports.values(), key=lambda r: r["started"]):
        by_worker.setdefault(report["worker"], []).append(report)
    result = []
    for fault in faults:
        times: dict[str, float] = {}
        since = max(fault.injected, fault.effective)
        for worker, reports in by_worker.items():
            for report in reports:
                if report["route"] in fault.routes and report["started"] >= since:
                    if report["status"] == "done":
                        times[worker] = round(report["finished"] - fault.injected, 3)
                        break
        result.append(times)
    return result


def failovers(faults: list[Fault], ledger: Ledger) -> list[dict[str, Any]]:
    """Per failover fault, from the demotion: ``detection``, to the first time the
    guard found a connection of an affected route on the read-only node (a job's
    ``read_only_at``); ``recovery``, to the end of the first job on an affected
    route that wrote its row and started once the demotion was in effect. None:
    it never happened (before the next fault)."""
    applied = [f for f in faults if not f.error]
    result = []
    for index, fault in enumerate(applied):
        if fault.kind != "failover":
            continue
        after = applied[index + 1 :]
        until = after[0].injected if after else float("inf")
        on_routes = [r for r in ledger.reports.values() if r["route"] in fault.routes]
        found = [
            r["read_only_at"]
            for r in on_routes
            if r.get("read_only_at") and fault.injected <= r["read_only_at"] < until
        ]
        wrote = [
            r["finished"]
            for r in on_routes
            if r["status"] == "done" and r["started"] >= fault.effective
        ]
        failed = [
            r
            for r in on_routes
            if r["status"] == "failed" and fault.injected <= r["started"] < until
        ]
        result.append(
            {
                "target": fault.target,
                "injected": fault.injected,
                "detection": round(min(found) - fault.injected, 3) if found else None,
                "recovery": round(min(wrote) - fault.injected, 3) if wrote else None,
                "jobs_failed": len(failed),
            }
        )
    return result


def failover_summary(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """p50 and max of detection and recovery, per target and over all, and the verdict."""

    def stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "n": len(rows),
            "detection": percentiles([r["detection"] for r in rows if r["detection"] is not None]),
            "recovery": percentiles([r["recovery"] for r in rows if r["recovery"] is not None]),
            "jobs_failed": sum(r["jobs_failed"] for r in rows),
        }

    undetected = [r for r in measured if r["detection"] is None]
    unrecovered = [r for r in measured if r["recovery"] is None]
    slow = [
        r
        for r in measured
        if (r["detection"] or 0) > FAILOVER_DETECTION_BOUND
        or (r["recovery"] or 0) > FAILOVER_RECOVERY_BOUND
    ]
    targets = sorted({r["target"] for r in measured})
    return {
        "hold": FAILOVER_HOLD,
        "detection_bound": FAILOVER_DETECTION_BOUND,
        "recovery_bound": FAILOVER_RECOVERY_BOUND,
        "all": stats(measured),
        "per_target": {t: stats([r for r in measured if r["target"] == t]) for t in targets},
        "not_detected": len(undetected),
        "not_recovered": len(unrecovered),
        "over_bound": len(slow),
        "passed": not (undetected or unrecovered or slow),
    }


def blackhole_detection(faults: list[Fault], ledger: Ledger) -> list[float]:
    """How long each job that met the blackhole took to fail: start to exception."""
    windows = [(f.injected, f.ended) for f in faults if f.kind == "blackhole" and not f.error]
    return [
        r["finished"] - r["started"]
        for r in ledger.reports.values()
        if r["route"].endswith("blackhole")
        and r["status"] == "failed"
        and any(start - 1 <= r["started"] <= end for start, end in windows)
    ]


def build(
    faults: list[Fault],
    ledger: Ledger,
    result: Reconciliation,
    stuck: list[str],
    broken: list[str],
    seconds: float,
) -> dict[str, Any]:
    detection = blackhole_detection(faults, ledger)
    per_fault = recoveries(faults, ledger)
    by_kind: dict[str, list[float]] = {}
    for fault, times in zip(faults, per_fault, strict=True):
        if not fault.error:
            by_kind.setdefault(fault.kind, []).extend(times.values())
    slow = [d for d in detection if d > DETECTION_BOUND]
    per_failover = failovers(faults, ledger)
    failover = failover_summary(per_failover)
    per_worker: dict[str, Counter[str]] = {}
    for report in ledger.reports.values():
        per_worker.setdefault(report["worker"], Counter())[report["status"]] += 1
    return {
        "passed": result.ok and not stuck and not broken and not slow and failover["passed"],
        "seconds": round(seconds, 1),
        "drivers": drivers(),
        "faults": dict(Counter(f.kind for f in faults if not f.error)),
        "faults_not_applied": [f"{f.kind} {f.target}: {f.error}" for f in faults if f.error],
        "fault_log": [{**vars(f), "recovery": t} for f, t in zip(faults, per_fault, strict=True)],
        "jobs_sent": len(ledger.sent),
        "jobs_done": result.done,
        "jobs_failed": dict(result.failed),
        "failure_examples": result.examples,
        "duplicates": len(result.duplicates),
        "lost": len(result.lost),
        "wrong_row_counts": result.wrong[:20],
        "stuck_workers": stuck,
        "workers_not_recovered": broken,
        "per_worker": {w: dict(c) for w, c in sorted(per_worker.items())},
        "recovery_seconds": {k: percentiles(v) for k, v in sorted(by_kind.items())},
        "blackhole_detection_seconds": percentiles(detection),
        "blackhole_detection_bound": DETECTION_BOUND,
        "blackhole_slow_detections": len(slow),
        # Per failover fault: its detection and recovery (also in fault_log).
        "failover": failover,
        "failover_faults": per_failover,
        # Every failed job's report, to look into (done ones would be too many).
        "failed_jobs": [r for r in ledger.reports.values() if r["status"] != "done"],
    }


def drivers() -> str:
    """The driver pair the workers use, chosen as in soak/project/settings.py."""
    mysql = os.environ.get("CONNGUARD_TEST_MYSQL_DRIVER") or "mysqlclient"
    postgresql = os.environ.get("CONNGUARD_TEST_PG_DRIVER") or "psycopg"
    return f"{mysql} + {postgresql}"


def render(summary: dict[str, Any]) -> str:
    lines = [f"connguard soak: {summary['seconds']} s, {summary['drivers']}"]
    add = lines.append
    add("")
    add("faults injected")
    for kind, count in sorted(summary["faults"].items()):
        add(f"  {kind:<30}{count:>8}")
    for text in summary["faults_not_applied"]:
        add(f"  not applied: {text}")
    add("")
    add("jobs")
    add(f"  {'sent':<30}{summary['jobs_sent']:>8}")
    add(f"  {'done':<30}{summary['jobs_done']:>8}")
    for reason, count in sorted(summary["jobs_failed"].items(), key=lambda kv: -kv[1]):
        # One line: libpq's messages end in a newline, some span several.
        example = " ".join(summary["failure_examples"][reason].split())[:90]
        add(f"  {'failed: ' + reason:<30}{count:>8}   e.g. {example}")
    add(f"  {'lost':<30}{summary['lost']:>8}")
    add(f"  {'duplicates':<30}{summary['duplicates']:>8}   (must be 0)")
    add(f"  {'wrong row counts':<30}{len(summary['wrong_row_counts']):>8}")
    add("")
    add("per worker (done / failed)")
    for worker, counts in summary["per_worker"].items():
        add(f"  {worker:<30}{counts.get('done', 0):>8} / {counts.get('failed', 0)}")
    add("")
    add("recovery time, s (injection -> first success per affected worker)")
    add(f"  {'fault':<12}{'n':>6}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}")
    for kind, p in summary["recovery_seconds"].items():
        add(f"  {kind:<12}{p['n']:>6}{p['p50']:>8}{p['p90']:>8}{p['p99']:>8}{p['max']:>8}")
    d = summary["blackhole_detection_seconds"]
    if d["n"]:
        add("")
        bound, slow = summary["blackhole_detection_bound"], summary["blackhole_slow_detections"]
        add(f"blackhole detection, s (job start -> exception; bound {bound})")
        add(f"  n {d['n']}  p50 {d['p50']}  p90 {d['p90']}  max {d['max']}  over bound {slow}")
    f = summary["failover"]
    if f["all"]["n"]:
        add("")
        add(
            f"failover, s (demotion -> first read-only finding / first write; hold {f['hold']}, "
            f"bounds {f['detection_bound']} / {f['recovery_bound']})"
        )
        add(f"  {'target':<12}{'n':>6}{'detect p50':>12}{'max':>8}{'recover p50':>13}{'max':>8}"
            f"{'jobs failed':>13}")  # fmt: skip
        rows = [*f["per_target"].items(), ("all", f["all"])]
        for target, p in rows:
            det, rec = p["detection"], p["recovery"]
            add(
                f"  {target:<12}{p['n']:>6}{det.get('p50', '-'):>12}{det.get('max', '-'):>8}"
                f"{rec.get('p50', '-'):>13}{rec.get('max', '-'):>8}{p['jobs_failed']:>13}"
            )
        add(
            f"  not detected {f['not_detected']}  not recovered {f['not_recovered']}  "
            f"over bound {f['over_bound']}"
        )
    add("")
    add(f"stuck workers: {', '.join(summary['stuck_workers']) or 'none'}")
    add(
        f"workers not recovered at the end: {', '.join(summary['workers_not_recovered']) or 'none'}"
    )
    for text in summary["wrong_row_counts"]:
        add(f"  wrong: {text}")
    add("")
    add("RESULT: " + ("PASS" if summary["passed"] else "FAIL"))
    return "\n".join(lines)

"""``results.json`` as Markdown tables: printed by ``benchmarks.run``, and saved as
``summary.md``, which the docs include, so that no figure is copied by hand.

    python -m benchmarks.report benchmarks/results/results.json   # print again
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.strategies import VENDORS

METHODS = {
    "connguard": "connguard (the next job, as it is)",
    "reconnect": "stock, `close()` then the statement",
    "health_checks": "stock, `CONN_HEALTH_CHECKS` + `close_old_connections()`",
}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def throughput(results: dict[str, Any]) -> list[str]:
    labels = {key: value["label"] for key, value in results["strategies"].items()}
    config = results["config"]
    lines: list[str] = []
    for vendor, rows in results["throughput"].items():
        counts = results["round_trips"][vendor]
        server = results["environment"]["servers"][vendor]
        lines += [
            f"### {VENDORS[vendor]} ({server})",
            "",
            f"One worker thread; {config['rounds']} interleaved rounds of one block per strategy, "
            f"each block about {config.get('block_ms', '?')} ms of jobs on a connection of its "
            f"own{_process_note(config)}. Ratios to the upper bound: of jobs per second, with a "
            "95 % bootstrap interval, and of the worker's CPU time per job (stock's over the "
            "strategy's), each paired by round. Round trips counted through a proxy over "
            f"{config['count_jobs']} jobs.",
            "",
        ]
        table = []
        for key, row in rows.items():
            latency, count = row["latency_us"], counts[key]
            low, high = row.get("ratio_ci95", (None, None))
            interval = f" ({low:.3f} to {high:.3f})" if low is not None else ""
            table.append(
                [
                    labels[key],
                    f"{row['jobs_per_s_median']:.0f}",
                    f"{row['ratio_to_upper_bound']:.3f}{interval}",
                    f"{row['cpu_us_per_job_median']:.0f}",
                    f"{row['cpu_ratio_to_upper_bound']:.3f}",
                    f"{latency['p50']:.0f}",
                    f"{latency['p90']:.0f}",
                    f"{latency['p99']:.0f}",
                    f"{count['round_trips_per_job']:.2f}",
                    f"{count['extra_round_trips_per_job']:+.2f}",
                    f"{count['connections_per_job']:.2f}",
                ]
            )
        lines += _table(
            [
                "strategy",
                "jobs/s",
                "ratio (95 %)",
                "worker CPU µs/job",
                "CPU ratio",
                "p50 µs",
                "p90 µs",
                "p99 µs",
                "round trips/job",
                "extra",
                "connects/job",
            ],
            table,
        )
        lines.append("")
    return lines


def _process_note(config: dict[str, Any]) -> str:
    notes = []
    if config.get("respawn"):
        notes.append(f"fresh worker processes every {config['respawn']} rounds")
    if config.get("pinned_cpus"):
        cpus = ", ".join(map(str, config["pinned_cpus"]))
        notes.append(f"workers and servers pinned to CPU {cpus}")
    return "; " + "; ".join(notes) if notes else ""


def instructions(results: dict[str, Any]) -> list[str]:
    if "instructions" not in results:
        return []
    labels = {key: value["label"] for key, value in results["strategies"].items()}
    short, long = results["config"]["instruction_jobs"]
    rows = [
        [
            VENDORS[vendor],
            labels[key],
            f"{row['instructions_per_job']:,}",
            f"{row['extra_per_job']:+,}",
            f"{row['extra_fraction'] * 100:+.2f} %",
        ]
        for vendor, counted in results["instructions"].items()
        for key, row in counted.items()
    ]
    return [
        "### The worker's instructions per job",
        "",
        "Counted by callgrind: every instruction the worker process executed, over "
        f"{long} jobs less over {short} jobs, divided by the {long - short} extra jobs "
        "(`PYTHONHASHSEED=0`). Unlike time, this does not move with the machine's load. "
        "The servers' work is not in it; the round trips above show that it is the same.",
        "",
        *_table(["server", "strategy", "instructions/job", "extra", "extra %"], rows),
        "",
    ]


def scaling(results: dict[str, Any]) -> list[str]:
    labels = {key: value["label"] for key, value in results["strategies"].items()}
    keys = [key for key in results["scaling"][0] if key not in ("vendor", "threads", "jobs")]
    header = ["server", "threads", "jobs"]
    header += [f"{labels[key]}: µs/job (ratio), CPU µs/job" for key in keys]
    rows = []
    for row in results["scaling"]:
        cells = [VENDORS[row["vendor"]], str(row["threads"]), f"{row['jobs']:,}"]
        for key in keys:
            cell = row[key]
            cells.append(
                f"{cell['us_per_job']:.0f} ({cell['ratio_to_upper_bound']:.3f}), "
                f"{cell['cpu_us_per_job']:.0f}"
            )
        rows.append(cells)
    return [*_table(header, rows), ""]


def recovery(results: dict[str, Any]) -> list[str]:
    rows = []
    paths = []
    for vendor, row in results["recovery"].items():
        for method, measures in row["methods"].items():
            total, after_close = measures["kill_to_success_ms"], measures["closed_to_success_ms"]
            rows.append(
                [
                    VENDORS[vendor],
                    METHODS[method],
                    f"{total['median']:.2f}",
                    f"{total['p90']:.2f}",
                    f"{after_close['median']:.2f}",
                    f"{after_close['p90']:.2f}",
                ]
            )
        taken = ", ".join(f"{path} x{count}" for path, count in row["connguard_paths"].items())
        paths.append(f"{VENDORS[vendor]}: {taken}")
    header = [
        "server",
        "after the kill",
        "kill → ok, median ms",
        "p90",
        "close → ok, median",
        "p90",
    ]
    trials = next(iter(results["recovery"].values()))["trials"]
    return [
        *_table(header, rows),
        "",
        f"{trials} kills per method and server. How connguard got going again: {'; '.join(paths)}.",
        "",
    ]


def _load(environment: dict[str, Any], when: str) -> str:
    return "/".join(map(str, environment.get(f"load_average_at_{when}", ["?"])))


def markdown(results: dict[str, Any]) -> str:
    environment = results["environment"]
    packages = ", ".join(f"{name} {version}" for name, version in environment["packages"].items())
    lines = [
        f"Run on {results['date']} (commit {environment['commit']}) with `{results['command']}`, "
        f"in {results['duration_s']:.0f} s: Python {environment['python']}, {packages}; "
        f"{environment['cpus']} CPUs ({environment['platform']}); load average "
        f"{_load(environment, 'start')} at the start, {_load(environment, 'end')} at the end.",
        "",
        *throughput(results),
        *instructions(results),
        "### Scaling",
        "",
        "Wall time per job (elapsed time over jobs), throughput as a ratio to the stock persistent "
        "connection in the same configuration, and the worker's CPU time per job (all threads).",
        "",
        *scaling(results),
        "### Recovery",
        "",
        "From a server-side kill (`KILL CONNECTION`, `pg_terminate_backend()`) to the first "
        "successful statement; the second pair of columns starts once the server has closed "
        "the session.",
        "",
        *recovery(results),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))

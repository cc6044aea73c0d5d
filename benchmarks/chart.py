"""The charts for ``results.json``: throughput by strategy, and scaling.

To redraw them without running the benchmark again:
``python -m benchmarks.chart benchmarks/results/results.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt

from benchmarks.strategies import VENDORS

CONNGUARD = "#1f7a4d"
OTHERS = "#8c96a3"
UPPER = "#3b5b92"
CONTROL = "#a9b8d6"


def _colour(key: str, upper: str) -> str:
    if key == upper:
        return UPPER
    if key == "control":
        return CONTROL
    return CONNGUARD if key.startswith("connguard") else OTHERS


def draw_throughput(results: dict[str, Any], path: Path) -> None:
    vendors = list(results["throughput"])
    labels = {key: value["label"] for key, value in results["strategies"].items()}
    upper = results["upper_bound"]
    figure, axes = plt.subplots(
        1, len(vendors), figsize=(6.2 * len(vendors), 4.4), squeeze=False, sharey=False
    )
    for axis, vendor in zip(axes[0], vendors, strict=True):
        rows = results["throughput"][vendor]
        trips = results["round_trips"][vendor]
        keys = list(rows)[::-1]  # the upper bound on top
        rates = [rows[key]["jobs_per_s_median"] for key in keys]
        bars = axis.barh(
            [labels[key] for key in keys],
            rates,
            color=[_colour(key, upper) for key in keys],
        )
        for bar, key in zip(bars, keys, strict=True):
            row = rows[key]
            axis.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {row['ratio_to_upper_bound']:.3f}x"
                f" (CPU {row['cpu_ratio_to_upper_bound']:.3f}x),"
                f" {trips[key]['round_trips_per_job']:.0f} trips/job",
                va="center",
                fontsize=8,
            )
        axis.set_xlim(0, max(rates) * 1.75)
        axis.set_xlabel("jobs per second, one worker thread (median)")
        axis.set_title(f"{VENDORS[vendor]}: SELECT by pk + UPDATE per job", fontsize=10)
        axis.tick_params(axis="y", labelsize=8)
        axis.grid(axis="x", alpha=0.3)
    config = results["config"]
    figure.suptitle(
        f"Worker throughput by connection strategy (ratio to the stock persistent connection; "
        f"{config['rounds']} interleaved rounds of ~{config.get('block_ms', '?')} ms blocks, "
        "loopback)",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw_scaling(results: dict[str, Any], path: Path) -> None:
    vendors = list(results["throughput"])
    points = results["scaling"]
    keys = [key for key in points[0] if key not in ("vendor", "threads", "jobs")]
    labels = {key: value["label"] for key, value in results["strategies"].items()}
    upper = results["upper_bound"]
    figure, axes = plt.subplots(1, len(vendors), figsize=(6.2 * len(vendors), 3.8), squeeze=False)
    for axis, vendor in zip(axes[0], vendors, strict=True):
        rows = [row for row in points if row["vendor"] == vendor]
        ticks = [f"{row['threads']} thr\n{_jobs(row['jobs'])} jobs" for row in rows]
        width = 0.8 / len(keys)
        for index, key in enumerate(keys):
            axis.bar(
                [i + (index - (len(keys) - 1) / 2) * width for i in range(len(rows))],
                [row[key]["us_per_job"] for row in rows],
                width,
                label=labels[key],
                color=_colour(key, upper),
            )
        axis.set_xticks(range(len(rows)), ticks, fontsize=7)
        axis.set_ylabel("µs of wall time per job")
        axis.set_title(f"{VENDORS[vendor]}: per-job cost by threads and job count", fontsize=10)
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _jobs(count: int) -> str:
    return f"{count // 1000}k" if count >= 1000 and count % 1000 == 0 else str(count)


def draw(results: dict[str, Any], out: Path) -> list[Path]:
    charts = [out / "throughput.png", out / "scaling.png"]
    draw_throughput(results, charts[0])
    draw_scaling(results, charts[1])
    return charts


if __name__ == "__main__":
    source = Path(sys.argv[1])
    for chart in draw(json.loads(source.read_text()), source.parent):
        print(chart)

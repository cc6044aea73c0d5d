"""python -m soak [--duration 120] [--seed N] [--json out.json] [--workers ...] [--routes ...]"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
from collections.abc import Callable

from soak import faults, summary, topology
from soak.run import run
from soak.workers import KINDS


def _choices(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        chosen = tuple(part for part in text.split(",") if part)
        unknown = set(chosen) - set(allowed)
        if unknown or not chosen:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}")
        return chosen

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of faults")
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument("--json", help="also write the summary to this file")
    parser.add_argument("--workers", type=_choices(KINDS), default=KINDS)
    parser.add_argument("--routes", type=_choices(topology.ALL_ROUTES), default=topology.ALL_ROUTES)
    parser.add_argument("--faults", type=_choices(faults.KINDS), default=faults.KINDS)
    args = parser.parse_args(argv)
    # A CI timeout's SIGTERM unwinds like an exception: the finally blocks stop
    # every process and delete the namespace instead of leaving them behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    if os.geteuid() != 0 and any(route.endswith("blackhole") for route in args.routes):
        # The namespace needs root; say so rather than fail half-way.
        args.routes = tuple(r for r in args.routes if not r.endswith("blackhole"))
        args.faults = tuple(f for f in args.faults if f != "blackhole")
        print("soak: not root, so no blackhole routes or faults (see soak/README.md)")
    report = run(args.duration, seed, workers=args.workers, routes=args.routes, kinds=args.faults)
    report["seed"] = seed
    print(summary.render(report), flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2, default=str)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""One benchmark process: one strategy (or the recovery run) on one vendor.

``benchmarks.run`` gives every strategy its own process, so that none inherits
another's imports, connections or warm caches. The spec is JSON in the first
argument; the answers are lines of JSON on standard output.

    python -m benchmarks.worker '{"mode": "count", "strategy": "connguard", ...}'

Modes:

* ``blocks``: stays up and runs one block of jobs per line of standard input
  (``jobs`` jobs over ``threads`` threads, after ``warmup`` jobs per thread);
  answers with jobs per second, and writes each job's latency to the block's
  ``latencies`` file (native doubles, microseconds).
* ``count``: ``jobs`` jobs through a ``RoundTripProxy``: round trips, bytes and
  connections per job, counted on the wire.
* ``recovery``: the server kills the worker's connection ``trials`` times;
  the time from the kill to the first successful statement, for connguard and
  for the stock backend's ways to get going again.
* ``loop``: ``warmup`` then ``jobs`` jobs and nothing else, for
  ``benchmarks.instructions`` to count under callgrind; with ``bare``, the
  ``jobs`` are ``with connguard.job(): pass`` after the warm-up.

A ``cpus`` list in the spec pins the process (``benchmarks.pinning``).
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import threading
import time
from array import array
from typing import Any

import django
from django.conf import settings

from benchmarks.pinning import pin_self
from benchmarks.strategies import BY_KEY, ROWS, Strategy, make_job
from benchmarks.wire import RoundTripProxy
from connguard import _faults
from testbed.servers import BY_VENDOR


def configure(databases: dict[str, Any]) -> None:
    settings.configure(
        DEBUG=False,
        USE_TZ=True,
        INSTALLED_APPS=["benchmarks"],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        DATABASES=databases,
    )
    django.setup()


def keys(seed: int, count: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, ROWS) for _ in range(count)]


# ##### throughput #####


def run_block(block: dict[str, Any], strategy: Strategy) -> dict[str, Any]:
    """``jobs`` jobs over ``threads`` fresh threads, each warmed up (and so connected) first."""
    from django.db import connections

    threads, jobs = block["threads"], block["jobs"]
    per_thread = [jobs // threads + (i < jobs % threads) for i in range(threads)]
    latencies = [array("d") for _ in range(threads)]
    ends = [0] * threads
    cpu = [0.0] * threads  # each thread's own CPU time in the timed loop
    start = [0]
    errors: list[BaseException] = []
    barrier = threading.Barrier(
        threads, action=lambda: start.__setitem__(0, time.perf_counter_ns())
    )

    def run(index: int) -> None:
        try:
            job = make_job(strategy)
            seed = block["seed"] * 1000 + index
            for pk in keys(seed + 500, block["warmup"]):
                job(pk)
            todo = keys(seed, per_thread[index])
            record = latencies[index].append
            clock = time.perf_counter_ns
            barrier.wait()
            cpu_began = time.thread_time()
            for pk in todo:
                began = clock()
                job(pk)
                record((clock() - began) / 1000)
            ends[index] = clock()
            cpu[index] = time.thread_time() - cpu_began
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            connections.close_all()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    elapsed = (max(ends) - start[0]) / 1e9
    with open(block["latencies"], "wb") as out:
        for part in latencies:
            part.tofile(out)
    return {
        "jobs": jobs,
        "threads": threads,
        "elapsed_s": elapsed,
        "jobs_per_s": jobs / elapsed,
        # The worker's own CPU per job: what a strategy costs the client,
        # apart from waiting for the server.
        "cpu_us_per_job": sum(cpu) / jobs * 1e6,
    }


def serve_blocks(strategy: Strategy) -> None:
    """Run one block per line of standard input; answer each with a line of JSON.

    The process stays up between blocks, so that ``benchmarks.run`` can
    interleave the strategies block by block without paying for a start each time.
    """
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(run_block(json.loads(line), strategy)), flush=True)


def warmed_job(spec: dict[str, Any], strategy: Strategy) -> Any:
    """The strategy's job, after ``warmup`` untimed, uncounted runs (connected by then)."""
    job = make_job(strategy)
    for pk in keys(spec["seed"] + 500, spec["warmup"]):
        job(pk)
    return job


# ##### count #####


def count(spec: dict[str, Any], strategy: Strategy, proxy: RoundTripProxy) -> dict[str, Any]:
    from django.db import connections

    import connguard

    job = warmed_job(spec, strategy)
    connguard.reset_stats()
    proxy.reset_counters()
    before = proxy.counters()
    for pk in keys(spec["seed"], spec["jobs"]):
        job(pk)
    # A close at the end of a job sends a last message with no reply: let the
    # proxy see it before reading the counters.
    time.sleep(0.2)
    after = proxy.counters()
    connections.close_all()
    jobs = spec["jobs"]
    result: dict[str, Any] = {
        "jobs": jobs,
        **{f"{key}_per_job": (after[key] - before[key]) / jobs for key in after},
    }
    if strategy.engine.startswith("connguard"):
        result["connguard_stats"] = connguard.stats("default")
    return result


# ##### recovery #####


def kill(admin: Any, wrapper: Any) -> None:
    """End ``wrapper``'s session from ``admin``, a connection kept open for this.

    Through the testbed's ``kill_through()``, not a ``kill()`` that starts a
    client, nor ``connguard._faults.kill()``, which opens a connection of its own
    for each kill: that connect would be timed as part of the recovery.
    """
    with admin.cursor() as cursor:
        BY_VENDOR[wrapper.vendor].kill_through(cursor, _faults.session_id(wrapper))


def recovery(spec: dict[str, Any]) -> dict[str, Any]:
    from django.db import DatabaseError, close_old_connections, connections

    import connguard
    from benchmarks.models import BenchItem

    def plain_reconnect() -> None:
        with contextlib.suppress(DatabaseError):
            connections["reconnect"].close()
        BenchItem.objects.using("reconnect").get(pk=1)

    def health_check() -> None:
        close_old_connections()
        BenchItem.objects.using("health_checks").get(pk=1)

    methods = {
        "connguard": lambda: BenchItem.objects.using("connguard").get(pk=1),
        "reconnect": plain_reconnect,
        "health_checks": health_check,
    }
    samples: dict[str, dict[str, list[float]]] = {
        name: {"kill_to_success_ms": [], "closed_to_success_ms": []} for name in methods
    }
    admin = connections["default"]
    admin.ensure_connection()
    paths: dict[str, int] = {}
    for trial in range(spec["trials"]):
        names = list(methods)
        names = names[trial % len(names) :] + names[: trial % len(names)]
        for name in names:
            methods[name]()  # connected and used
            wrapper = connections[name]
            fd = _faults.socket_fd(wrapper)
            before = connguard.stats("connguard")
            began = time.perf_counter()
            kill(admin, wrapper)
            # As a worker between jobs would be: the server's close has arrived.
            if not _faults.wait_closed(fd, timeout=5.0):
                raise RuntimeError("the server did not close the killed connection")
            closed = time.perf_counter()
            methods[name]()
            done = time.perf_counter()
            samples[name]["kill_to_success_ms"].append((done - began) * 1000)
            samples[name]["closed_to_success_ms"].append((done - closed) * 1000)
            if name == "connguard":
                # How the guard got going again: replaced before use (and why), or
                # the statement failed and was retried on a fresh connection.
                after = connguard.stats("connguard")
                grew = [k for k, v in after.items() if v > before.get(k, 0)]
                replaced = [k for k in grew if k.startswith("replaced_")]
                path = "retried" if "retries" in grew else "+".join(sorted(replaced)) or "none"
                paths[path] = paths.get(path, 0) + 1
    connections.close_all()
    return {"trials": spec["trials"], "samples": samples, "connguard_paths": paths}


def loop(spec: dict[str, Any], strategy: Strategy) -> None:
    job = warmed_job(spec, strategy)
    if spec.get("bare"):
        # connguard.job() around nothing, on the warmed-up connection: what
        # job() itself costs, without the statements around it.
        import connguard

        for _ in range(spec["jobs"]):
            with connguard.job():
                pass
        return
    for pk in keys(spec["seed"], spec["jobs"]):
        job(pk)


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    mode = spec["mode"]
    if spec.get("cpus"):
        pin_self(set(spec["cpus"]))
    if mode == "recovery":
        databases = {
            name: BY_KEY[name].settings(spec["vendor"], spec["server"])
            for name in ("connguard", "reconnect", "health_checks")
        }
        # "default" kills the others' sessions.
        databases["connguard"]["CONN_MAX_AGE"] = None
        databases["default"] = BY_KEY["stock"].settings(spec["vendor"], spec["server"])
        configure(databases)
        result = recovery(spec)
    else:
        strategy = BY_KEY[spec["strategy"]]
        server = dict(spec["server"])
        if mode == "count":
            proxy = RoundTripProxy(server["host"], server["port"])
            server.update(host=proxy.host, port=proxy.port)
            configure({"default": strategy.settings(spec["vendor"], server)})
            result = count(spec, strategy, proxy)
            proxy.close()
        elif mode == "loop":
            configure({"default": strategy.settings(spec["vendor"], server)})
            loop(spec, strategy)
            return
        else:
            configure({"default": strategy.settings(spec["vendor"], server)})
            serve_blocks(strategy)
            return
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])

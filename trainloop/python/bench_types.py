"""Measure the typed autoscaler from inside a driver job (scripts/bench section 9).

The cluster has three worker types: ``gpu`` (an A100), ``h100`` (advertises
the ``h100`` resource) and ``cpu`` (no GPU). First the driver fills every
free GPU and CPU of the running nodes (the head's, its own) with idle
actors, so that whatever it asks next can only be served by a new worker.
Each run then creates, at once, one actor per type: ``{GPU: 1}`` (goes to
``gpu``, the cheapest type holding it), ``{GPU: 1, h100: 1}`` (only ``h100``
holds it) and ``{CPU: 1}`` (the CPU trap keeps it off GPU nodes, so it waits
and shows as demand). It records the wall time it created them and, per
type, when the head recorded the first new submission of that type; then it
kills the three actors and waits until the cluster is back to its nodes
before the next run.

Prints one line ``BENCH {"runs": [{"t0": .., "end": .., "submitted_s": {type: s}}]}``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

import ray

from bench_autoscale import start, wait  # beside this file, on the driver's sys.path

TYPES = {"gpu": {"num_gpus": 1}, "h100": {"num_gpus": 1, "resources": {"h100": 1}}, "cpu": {"num_cpus": 1}}


@ray.remote
class Hold:
    """An actor that only holds its resources while it lives."""

    def ready(self) -> bool:
        return True


def worker_subs(cluster_dir: str) -> dict:
    """The cluster's worker submission records, by file name."""
    d = os.path.join(cluster_dir, "submissions")
    out = {}
    for n in os.listdir(d):
        if n.startswith("worker-") and n.endswith(".json"):
            with open(os.path.join(d, n)) as f:
                out[n] = json.load(f)
    return out


def fill() -> list:
    """Idle actors on every free GPU and CPU, so new demand fits no running node."""
    free = ray.available_resources()
    # A GPU actor holds one CPU too (Ray's default once a resource is named).
    held = [Hold.options(num_gpus=1).remote() for _ in range(int(free.get("GPU", 0)))]
    ray.get([h.ready.remote() for h in held])
    cpus = [Hold.options(num_cpus=1).remote() for _ in range(int(ray.available_resources().get("CPU", 0)))]
    ray.get([h.ready.remote() for h in cpus])
    return held + cpus


def first_new(cluster_dir: str, before: dict) -> dict:
    """Per type, the earliest submission time of the records not in before."""
    out = {}
    for name, s in worker_subs(cluster_dir).items():
        if name not in before:
            t = datetime.fromisoformat(s["submitted"]).timestamp()
            out[s.get("type", "")] = min(t, out.get(s.get("type", ""), t))
    return out


def all_submitted(cluster_dir: str, before: dict):
    """first_new once every type has a new submission, else None."""
    got = first_new(cluster_dir, before)
    return got if set(TYPES) <= set(got) else None


def settled_twice(cluster_dir: str, nodes: int) -> bool:
    # Twice, a second apart: a worker between its job's start and its Ray's
    # join may show in neither count for a moment.
    return settled(cluster_dir, nodes) and (time.sleep(1) or settled(cluster_dir, nodes))


def settled(cluster_dir: str, nodes: int) -> bool:
    """Back to the nodes before the run, and no worker pending or starting."""
    with open(os.path.join(cluster_dir, "autoscaler.json")) as f:
        pending = json.load(f).get("pending_workers", 0)
    return pending == 0 and len([n for n in ray.nodes() if n["Alive"]]) == nodes


def one_run(cluster_dir: str, nodes: int) -> dict:
    before = worker_subs(cluster_dir)
    t0 = time.time()
    actors = [Hold.options(**opts).remote() for opts in TYPES.values()]
    got = wait(lambda: all_submitted(cluster_dir, before), 60, "submission of every type")
    end = time.time()
    for a in actors:
        ray.kill(a)
    wait(lambda: settled_twice(cluster_dir, nodes), 180, "return to the nodes before the run")
    return {"t0": t0, "end": end, "submitted_s": {t: got[t] - t0 for t in TYPES}}


def main() -> None:
    wanted, cluster_dir = start()
    held = fill()  # alive until main returns: the running nodes stay full
    nodes = len([n for n in ray.nodes() if n["Alive"]])
    runs = [one_run(cluster_dir, nodes) for _ in range(wanted)]
    print("BENCH " + json.dumps({"runs": runs}), flush=True)


if __name__ == "__main__":
    main()

"""Measure the autoscaler from inside a driver job (run by scripts/bench).

Each run asks Ray for one GPU more than the cluster has, through
request_resources, and times until the head's autoscaler has recorded a
worker submission, and until that worker's GPU is in the cluster; then it
lifts the request and waits until no worker job is left before the next run.
Prints one JSON object: {"submitted_s": [...], "joined_s": [...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import ray
from ray.autoscaler.sdk import request_resources


def submissions(cluster_dir: str) -> set:
    d = os.path.join(cluster_dir, "submissions")
    return {n for n in os.listdir(d) if n.startswith("worker-") and n.endswith(".json")}


def submitted_at(cluster_dir: str, name: str) -> float:
    from sraybatch_trainloop.state import parse_time

    with open(os.path.join(cluster_dir, "submissions", name)) as f:
        return parse_time(json.load(f)["submitted"])


def wait(pred, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"bench_autoscale: no {what} within {timeout:.0f} s")


def start() -> tuple:
    """A bench driver's --runs and its cluster directory, once connected to
    Ray (bench_types.py shares it)."""
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    ray.init()
    return args.runs, os.environ["SRAYBATCH_CLUSTER_DIR"]


def main() -> None:
    runs, cluster_dir = start()
    base = ray.cluster_resources().get("GPU", 0)
    out = {"submitted_s": [], "joined_s": []}
    for _ in range(runs):
        before = submissions(cluster_dir)
        t0 = time.time()
        request_resources(bundles=[{"GPU": 1}] * int(base + 1))
        new = wait(lambda: submissions(cluster_dir) - before, 60, "worker submission")
        out["submitted_s"].append(submitted_at(cluster_dir, sorted(new)[0]) - t0)
        wait(lambda: ray.cluster_resources().get("GPU", 0) > base, 120, "new GPU")
        out["joined_s"].append(time.time() - t0)
        request_resources(bundles=[])
        wait(lambda: ray.cluster_resources().get("GPU", 0) <= base, 120, "drain back to the head")
    print("BENCH " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

"""Replay a demand trace on a cluster (scripts/bench section 10), and the pure
helpers that turn its records and the cluster's into figures.

As a driver (``sraybatch train -- python bench_replay.py TRACE``) it starts
each entry of the trace (scripts/bench_trace.json) at its offset: ``cpu``
entries are one-CPU tasks, ``gpu`` entries one-GPU actors (Ray's default
for an actor naming a GPU: one CPU too) that work ``seconds`` and are then
killed, as a training or evaluation stage's actors are. Each task and actor
records where its work started and ended (the fake SLURM nodes share one
host, so one clock). Prints one line ``REPLAY {"t0": .., "records": [..]}``.

The helpers import nothing beyond the standard library: scripts/bench runs
them outside the Ray venv.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

KINDS = ("cpu", "gpu")


def load_trace(path: str) -> list:
    """The trace's entries sorted by offset; a malformed one exits with what is wrong."""
    with open(path) as f:
        entries = json.load(f)["entries"]
    for i, e in enumerate(entries):
        ok = (e.get("kind") in KINDS and isinstance(e.get("count"), int) and e["count"] > 0
              and e.get("at", -1) >= 0 and e.get("seconds", 0) > 0)
        if not ok:
            raise SystemExit(f"{path}: entry {i} {e}: want at >= 0, kind cpu|gpu, count > 0, seconds > 0")
    return sorted(entries, key=lambda e: e["at"])


def peak(entries: list) -> dict:
    """Per kind, the most tasks/actors the trace runs at once if each starts
    on time: what a static cluster is sized for."""
    out = {}
    for kind in KINDS:
        edges = []
        for e in entries:
            if e["kind"] == kind:
                # An end sorts before a start at the same instant: [at, at+seconds).
                edges += [(e["at"], 1, e["count"]), (e["at"] + e["seconds"], 0, -e["count"])]
        now = best = 0
        for _, _, d in sorted(edges):
            now += d
            best = max(best, now)
        out[kind] = best
    return out


def makespan(t0: float, records: list) -> float:
    """Seconds from the replay's start to the end of its last task or actor."""
    return max(r["end"] for r in records) - t0


def ray_gpu_seconds(records: list) -> float:
    """GPU-seconds Ray allocated: each GPU actor's one GPU from its placement
    (its __init__) to its kill (its work returned)."""
    return sum(r["end"] - r["placed"] for r in records if r["kind"] == "gpu")


def go_time(s: str) -> float:
    """Unix seconds of a Go-written RFC 3339 UTC time."""
    return datetime.fromisoformat(s).timestamp()


def slurm_gpu_seconds(nodes: list, now: float) -> tuple:
    """GPU-seconds SLURM allocated to a cluster's jobs, from their node records
    (cluster dir nodes/*.json, written by each job's supervisor): GPUs x
    (started -> the final record's updated, or now while still running).
    Returns (total, head's share)."""
    total = head = 0.0
    for n in nodes:
        if not n.get("started") or n["started"].startswith("0001-"):
            continue  # never started: a pending job holds no GPU
        end = go_time(n["updated"]) if n.get("phase") in ("ended", "failed") else now
        s = n.get("gpus", 0) * max(end - go_time(n["started"]), 0.0)
        total += s
        head += s if n.get("role") == "head" else 0.0
    return total, head


def gpu_split(nodes: list, records: list, now: float) -> dict:
    """Where GPU worker jobs' SLURM GPU-seconds went (head excluded): before
    their first actor was placed ("before": job start, Ray start, join, and
    on a static cluster the wait for work), with actors (Ray-allocated),
    and the rest (gaps between actors, idle timeout, drain, exit). A job's
    actors are matched by its key (slurm_job_key)."""
    out = {"before": 0.0, "actors": 0.0, "rest": 0.0}
    for n in nodes:
        if n.get("role") != "worker" or not n.get("gpus") or n.get("started", "0001-").startswith("0001-"):
            continue
        total, _ = slurm_gpu_seconds([n], now)
        mine = [r for r in records if r["kind"] == "gpu" and r.get("job") == n["job"]]
        first = min((r["placed"] for r in mine), default=None)
        before = n["gpus"] * (first - go_time(n["started"])) if mine else 0.0
        actors = ray_gpu_seconds(mine)
        out["before"] += before
        out["actors"] += actors
        out["rest"] += total - before - actors
    return out


def slurm_job_key() -> str:
    """The sraybatch key ("8", or "7_0" for an array task) of the SLURM job
    this process runs in: a Ray worker inherits its raylet's environment,
    which is the job's."""
    import os

    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{task}"
    return os.environ.get("SLURM_JOB_ID", "")


def remotes():
    """The trace's task and actor, defined once Ray is imported (the helpers
    above must import without it)."""
    import ray

    @ray.remote(num_cpus=1)
    def cpu_task(seconds):
        t = time.time()
        time.sleep(seconds)
        return {"kind": "cpu", "start": t, "end": time.time()}

    @ray.remote(num_gpus=1)
    class GPUActor:
        def __init__(self):
            self.placed, self.job = time.time(), slurm_job_key()

        def work(self, seconds):
            t = time.time()
            time.sleep(seconds)
            return {"kind": "gpu", "placed": self.placed, "job": self.job, "start": t, "end": time.time()}

    return cpu_task, GPUActor


class Replay:
    """Runs a trace on the Ray cluster of ray.init(), collecting what ends
    while it waits for the next entry: a GPU actor is killed as soon as its
    work returns, so it holds its GPU no longer than a real stage would."""

    def __init__(self):
        import ray

        self.ray, (self.cpu_task, self.gpu_actor) = ray, remotes()
        self.pending, self.actors, self.records = {}, {}, []

    def run(self, entries: list) -> dict:
        t0 = time.time()
        for e in entries:
            self.collect_until(t0 + e["at"])
            self.launch(e)
        self.collect_until(None)
        return {"t0": t0, "records": self.records}

    def launch(self, e: dict) -> None:
        for _ in range(e["count"]):
            if e["kind"] == "cpu":
                self.pending[self.cpu_task.remote(e["seconds"])] = e["at"]
                continue
            a = self.gpu_actor.remote()
            ref = a.work.remote(e["seconds"])
            self.pending[ref], self.actors[ref] = e["at"], a

    def collect_until(self, deadline) -> None:
        """Record what ends until deadline (None: until nothing is left)."""
        while True:
            left = None if deadline is None else deadline - time.time()
            if (left is not None and left <= 0) or (deadline is None and not self.pending):
                return
            if not self.pending:
                time.sleep(left)
                return
            done, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=left)
            for ref in done:
                r = self.ray.get(ref)
                if ref in self.actors:
                    self.ray.kill(self.actors.pop(ref))
                    r["end"] = time.time()
                self.records.append({**r, "at": self.pending.pop(ref)})


def main() -> None:
    import ray

    ray.init()
    out = Replay().run(load_trace(sys.argv[1]))
    print("REPLAY " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()

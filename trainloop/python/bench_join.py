"""How long a joining node takes to do useful work in a running ElasticPool loop.

    python bench_join.py [--joins 6] [--gpus 2] [--step-seconds 0.5]

Starts a local multi-raylet Ray cluster (ray.cluster_utils.Cluster) with one
steady sraybatch node, runs a training-like loop on it in a thread, then adds
and removes a node ``--joins`` times.  For each actor on a joining node it
measures, from the raylet's registration in GCS (its ``start_time_ms``):

    seen      the pool's ray.nodes() poll saw the node
    pg_ready  the actor's placement group was placed
    ready     the actor answered its first call (joined the rotation)
    result    its first step result came back (waits for the next step boundary)

Prints median and max per phase (cumulative since registration and per phase);
the goal is ready <= 2 s.  No assertions.
"""

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sraybatch_trainloop import ElasticPool  # noqa: E402

MB = 1024 * 1024


class Worker:
    def step(self, seconds):
        time.sleep(seconds)
        return seconds


def gcs_start_times():
    # Private API: the GCS node table's start_time_ms (ray.nodes() does not show it).
    infos = ray._private.worker.global_worker.gcs_client.get_all_node_info()
    return {nid.hex(): info.start_time_ms / 1000 for nid, info in infos.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--joins", type=int, default=6)
    p.add_argument("--gpus", type=int, default=2, help="GPUs (= actors) per joining node")
    p.add_argument("--step-seconds", type=float, default=0.5)
    p.add_argument("--poll-interval", type=float, default=0.25)
    args = p.parse_args()

    cluster = Cluster(
        initialize_head=True,
        head_node_args=dict(num_cpus=1, num_gpus=0, object_store_memory=80 * MB, include_dashboard=False),
    )
    ray.init(address=cluster.address, log_to_driver=False)
    pool = ElasticPool(Worker, poll_interval_s=args.poll_interval)
    first_result = {}  # actor_id -> (time, ActorInfo)
    stop = threading.Event()
    durations = []

    def loop():
        while not stop.is_set():
            t0 = time.time()
            results = pool.run_step("step", args.step_seconds, wait_for_actors_s=1.0)
            now = time.time()
            if results:
                durations.append(now - t0)
            for r in results:
                first_result.setdefault(r.actor.actor_id, (now, r.actor))

    try:
        cluster.add_node(num_cpus=1, num_gpus=1, resources={"sraybatch_job_1": 1}, object_store_memory=80 * MB)
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        rows = []
        for i in range(args.joins):
            time.sleep(args.step_seconds * 1.7)  # join at varying points of a step
            node = cluster.add_node(
                num_cpus=1, num_gpus=args.gpus, resources={f"sraybatch_job_{100 + i}": 1}, object_store_memory=80 * MB
            )
            deadline = time.time() + 60
            while time.time() < deadline:
                mine = [(t, a) for t, a in list(first_result.values()) if a.node_id == node.node_id]
                if len(mine) == args.gpus:
                    break
                time.sleep(0.05)
            registered = gcs_start_times()[node.node_id]
            for t, a in mine:
                tm = a.timings
                rows.append(
                    {
                        "seen": tm["node_seen"] - registered,
                        "pg_ready": tm["pg_ready"] - registered,
                        "ready": tm["actor_ready"] - registered,
                        "result": t - registered,
                    }
                )
            print(f"join {i + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in rows[-1].items()), flush=True)
            cluster.remove_node(node)
        stop.set()
        thread.join(30)
    finally:
        pool.shutdown()
        ray.shutdown()
        cluster.shutdown()

    phases = ["seen", "pg_ready", "ready", "result"]
    print(f"\n{len(rows)} actors on {args.joins} joining nodes; poll interval {args.poll_interval}s")
    print(f"step duration: median {statistics.median(durations):.2f}s max {max(durations):.2f}s "
          f"(--step-seconds {args.step_seconds})")
    print(f"{'since registration':<22}{'median':>8}{'max':>8}   {'phase':<22}{'median':>8}{'max':>8}")
    prev = None
    for ph in phases:
        cum = [r[ph] for r in rows]
        delta = [r[ph] - (r[prev] if prev else 0) for r in rows]
        label = f"{prev or 'registered'} -> {ph}"
        print(f"{ph:<22}{statistics.median(cum):>7.2f}s{max(cum):>7.2f}s   "
              f"{label:<22}{statistics.median(delta):>7.2f}s{max(delta):>7.2f}s")
        prev = ph
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How long a replica on a joining node takes to enter a running pool's rotation when it must receive a large state.

    python bench_state_sync.py [--mb 400] [--joins 3] [--step-seconds 0.05]

Starts a local multi-raylet Ray cluster (ray.cluster_utils.Cluster) with one
steady sraybatch node whose replica holds ``--mb`` MB of state, runs a
training-like loop on it in a thread, then adds and removes a node
``--joins`` times.  For each join it measures, from ``node_joined`` (the pool
saw the node) to the newcomer in the rotation (its ``actor_spawned``), split
into the actor's start (``actor_ready``), the wait for the next step boundary
and the state transfer (``state_synced``: get_state on the peer, the pull
between raylets, set_state on the newcomer, which copies the state into its
own memory).

The baseline, measured in the same run: a plain ``ray.get`` of an object of
the same size already stored on the steady node's raylet, from a task on a
node that just joined (its object store as fresh as a joining node's: the
first write into a new store pays for the pages it touches, which a warm store
does not), timed inside the task.  A ``ray.get`` in the driver from a warm
store is printed too.  Prints medians, and the ratio to the baseline against
the goal (join -> rotation <= 1.3 x baseline + 0.5 s).  No assertions.  Each
node gets 2.5 x --mb of object store, so nothing spills.

The replica's ``set_state`` keeps the state as Ray hands it over (a read-only
view of the object store, no copy), as the baseline does; a real replica
copies it (to its GPU, into its optimizer), one more pass over the bytes.
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import ray
from ray.cluster_utils import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sraybatch_trainloop import ElasticPool, EventLog, read_events  # noqa: E402

MB = 1024 * 1024


class BigReplica:
    def __init__(self, mb):
        self.state = np.full(mb * MB, 7, dtype=np.uint8)

    def step(self, seconds):
        time.sleep(seconds)
        return 0.0

    def get_state(self):
        return self.state

    def set_state(self, state):
        self.state = state  # pins the object in the store while held; see the module docstring

    def make_blob(self, mb):
        return np.full(mb * MB, 3, dtype=np.uint8)


@ray.remote(num_cpus=0)
def timed_get(refs):
    t0 = time.perf_counter()
    ray.get(refs[0])  # in a list: Ray does not fetch it before the task starts
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=int, default=400)
    p.add_argument("--joins", type=int, default=3)
    p.add_argument("--step-seconds", type=float, default=0.05)
    args = p.parse_args()
    store = int(2.5 * args.mb) * MB

    cluster = Cluster(
        initialize_head=True,
        head_node_args=dict(num_cpus=1, num_gpus=0, object_store_memory=store, include_dashboard=False),
    )
    ray.init(address=cluster.address, log_to_driver=False)
    events_path = Path(tempfile.mkdtemp(prefix="bench_state_sync-")) / "events.jsonl"
    pool = ElasticPool(BigReplica, actor_args=(args.mb,), events=EventLog(events_path), poll_interval_s=0.05)
    stop = threading.Event()
    errors = []

    def loop():
        try:
            while not stop.is_set():
                pool.run_step("step", args.step_seconds, wait_for_actors_s=1.0)
        except BaseException as e:  # report, do not hang the main thread
            errors.append(e)

    baselines, warm, rows = [], [], []
    try:
        cluster.add_node(num_cpus=1, num_gpus=1, resources={"sraybatch_job_1": 1}, object_store_memory=store)
        assert pool.wait_for_actors(120), "the steady node's actor did not start"
        steady = pool.actors[0].handle
        for i in range(args.joins):  # the baselines, before the loop shares the raylets
            ref = steady.make_blob.remote(args.mb)
            ray.wait([ref], fetch_local=False, timeout=120)  # stored on the steady node, not fetched yet
            fresh = cluster.add_node(num_cpus=1, resources={f"baseline_{i}": 1}, object_store_memory=store)
            baselines.append(ray.get(timed_get.options(resources={f"baseline_{i}": 0.01}).remote([ref])))
            cluster.remove_node(fresh)
            t0 = time.perf_counter()
            ray.get(ref)
            warm.append(time.perf_counter() - t0)
            del ref
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        for i in range(args.joins):
            node = cluster.add_node(
                num_cpus=1, num_gpus=1, resources={f"sraybatch_job_{100 + i}": 1}, object_store_memory=store
            )
            deadline = time.time() + 180
            while time.time() < deadline and not errors:
                if any(a.node_id == node.node_id for a in pool.actors):
                    break
                time.sleep(0.05)
            records = read_events(events_path)
            joined = next(r["ts"] for r in records if r["event"] == "node_joined" and r["node_id"] == node.node_id)
            spawned = next(r for r in records if r["event"] == "actor_spawned" and r["node_id"] == node.node_id)
            synced = next(r for r in records if r["event"] == "state_synced" and r["actor"] == spawned["actor"])
            timings = next(a.timings for a in pool.actors if a.actor_id == spawned["actor"])
            rows.append(
                {
                    "actor start": timings["actor_ready"] - joined,
                    "wait for step": (synced["ts"] - synced["seconds"]) - timings["actor_ready"],
                    "state sync": synced["seconds"],
                    "join -> rotation": spawned["ts"] - joined,
                }
            )
            print(f"join {i + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in rows[-1].items())
                  + f" ({synced['bytes'] / MB:.0f} MB)", flush=True)
            cluster.remove_node(node)
        stop.set()
        thread.join(60)
    finally:
        stop.set()
        pool.shutdown()
        ray.shutdown()
        cluster.shutdown()
    if errors:
        raise errors[0]

    base = statistics.median(baselines)
    goal = 1.3 * base + 0.5
    print(f"\nbaseline: ray.get of {args.mb} MB from another raylet into a fresh one: median {base:.2f}s "
          f"({', '.join(f'{b:.2f}' for b in baselines)}); into the driver's (the first cold, then warm): "
          f"{', '.join(f'{b:.2f}' for b in warm)}")
    for name in rows[0]:
        med = statistics.median(r[name] for r in rows)
        print(f"{name:<18} median {med:.2f}s max {max(r[name] for r in rows):.2f}s  = {med / base:.2f}x baseline")
    total = statistics.median(r["join -> rotation"] for r in rows)
    sync = statistics.median(r["state sync"] for r in rows)
    print(f"goal 1.3 x baseline + 0.5 s = {goal:.2f}s: join -> rotation {total:.2f}s "
          f"({'met' if total <= goal else 'missed'}), state sync alone {sync:.2f}s ({'met' if sync <= goal else 'missed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

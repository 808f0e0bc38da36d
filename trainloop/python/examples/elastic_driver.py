"""A complete elastic driver: run it with `sraybatch train -- python3 elastic_driver.py`.

The driver job puts sraybatch_trainloop on PYTHONPATH and sets RAY_ADDRESS, so
a bare ray.init() joins the cluster. The pool gives every GPU of every joined
node one actor, adds actors as `sraybatch grow` adds nodes, and finishes each
step on the survivors when a node leaves.
"""
import argparse
import os
import time

import ray
from sraybatch_trainloop import ElasticPool, EventLog, draining_from_env


class Shard:
    """One data-parallel worker; a real one would hold a model replica."""

    def __init__(self, lr):
        self.lr = lr
        self.w = 0.0

    def step(self, k):
        # pretend gradient of (w - 3)^2
        self.w -= self.lr * 2 * (self.w - 3.0)
        return {"loss": (self.w - 3.0) ** 2, "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--gpus-per-actor", type=float, default=1)
    args = p.parse_args()

    ray.init()
    events = EventLog.from_env()  # the file `sraybatch status` reads; none outside a driver job
    pool = ElasticPool(Shard, actor_args=(args.lr,), gpus_per_actor=args.gpus_per_actor,
                       events=events, log=print, is_draining=draining_from_env())
    try:
        for k in range(args.steps):
            start = time.monotonic()
            results = pool.run_step("step", k)
            losses = [round(r.value["loss"], 4) for r in results]
            events.emit("step_done", step=k, actors=len(results),
                        mean_duration_s=time.monotonic() - start, losses=losses)
            print(f"step {k}: {len(results)} actors, losses {losses}", flush=True)
    finally:
        pool.shutdown()


if __name__ == "__main__":
    main()

"""Data-parallel linear regression on an elastic pool: run it with `sraybatch train -- python3 linear_regression.py`.

Every GPU of every joined node holds one replica of the model (numpy, to keep
the example small).  A step is synchronous data parallelism: each replica
takes its shard of the data -- rows rank, rank + world_size, ... -- makes one
gradient step from the shared weights, and the pool averages the replicas'
new weights and sends the mean back to all of them.  The per-replica results
are scaled by world_size / n, so the mean is exactly one full-batch gradient
step however many replicas there are: nodes may join and leave between steps
without changing the trajectory.

A replica that joins (its node joined, or it replaced a crashed actor) gets a
live replica's weights before its first step (get_state / set_state).  With
--checkpoint-dir (default $SRAYBATCH_CLUSTER_DIR/checkpoints in a driver job)
the weights are checkpointed every --checkpoint-every steps and a rerun
resumes from them.
"""
import argparse
import os
import time

import numpy as np
import ray
from sraybatch_trainloop import ElasticPool, EventLog, draining_from_env


class Replica:
    """One replica of y = x·w, fitted by full-batch gradient descent on the mean squared error."""

    def __init__(self, n=600, dim=8, lr=0.1, seed=0):
        # Every replica makes the same data set from the seed; a real one would read its shard from disk.
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(n, dim))
        self.y = self.x @ rng.normal(size=dim) + 0.1 * rng.normal(size=n)
        self.lr = lr
        self.w = np.zeros(dim)

    def step(self, *, rank, world_size):
        """One gradient step on this replica's shard; the pool averages what it returns."""
        x, y = self.x[rank::world_size], self.y[rank::world_size]
        err = x @ self.w - y
        scale = world_size / len(self.y)  # shard sums * world_size / n: their mean is the full-batch mean
        return {"weights": self.w - self.lr * 2 * scale * (x.T @ err), "loss": scale * float(err @ err)}

    def set_weights(self, mean):
        self.w = np.array(mean["weights"])  # a copy: the mean is a read-only view of the object store

    def get_state(self):
        return self.w

    def set_state(self, w):
        self.w = np.array(w)

    def get_weights(self):
        return self.w


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--gpus-per-actor", type=float, default=1)
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--checkpoint-every", type=int, default=20)
    p.add_argument("--step-seconds", type=float, default=0, help="pause after each step (demos and tests: time for nodes to come and go)")
    args = p.parse_args()
    checkpoint_dir = args.checkpoint_dir
    if checkpoint_dir is None and os.environ.get("SRAYBATCH_CLUSTER_DIR"):
        checkpoint_dir = os.path.join(os.environ["SRAYBATCH_CLUSTER_DIR"], "checkpoints")

    ray.init()
    events = EventLog.from_env()  # the file `sraybatch status` reads; none outside a driver job
    pool = ElasticPool(Replica, actor_kwargs={"lr": args.lr}, gpus_per_actor=args.gpus_per_actor,
                       events=events, log=print, is_draining=draining_from_env(), checkpoint_dir=checkpoint_dir)
    try:
        for k in range(1, args.steps + 1):
            start = time.monotonic()
            step = pool.run_data_parallel_step("step", apply_method="set_weights")
            if not step.results:
                continue
            events.emit("step_done", step=k, actors=len(step.results),
                        mean_duration_s=time.monotonic() - start, losses=[step.mean["loss"]])
            print(f"step {k}: {len(step.results)} replicas, loss {step.mean['loss']:.6f}", flush=True)
            if checkpoint_dir and k % args.checkpoint_every == 0:
                pool.checkpoint()
            time.sleep(args.step_seconds)
    finally:
        pool.shutdown()


if __name__ == "__main__":
    main()

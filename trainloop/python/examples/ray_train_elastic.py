"""Ray Train's elastic trainer on an sraybatch cluster: the cluster follows it.

``ScalingConfig(num_workers=(1, N))`` starts on whatever GPUs the cluster has
and asks Ray for N workers (``request_resources``); an sraybatch cluster
started with ``--autoscale`` submits worker jobs for that demand, the trainer
grows its worker group as they join, and restarts it from the last
checkpoint when a worker leaves (``FailureConfig(max_failures=-1)``: Train v2
defaults to 0, and the first lost worker would end the run). Checkpoints go
under the cluster directory, a filesystem every job shares.

Run it as the driver job:

    sraybatch up --name exp --gpus-per-node 1 --autoscale --max-workers 3 --wait
    sraybatch train -c exp -- python examples/ray_train_elastic.py --max-workers 3

It outlives its head on a rollover cluster (``up --rollover``): the run's
``RunConfig(name=--name, storage_path=...)`` is fixed, so when sraybatch runs
the script again after a head handover (``SRAYBATCH_RESUMED=1``), Ray Train
finds the run's snapshot (``<storage>/<name>/checkpoint_manager_snapshot.json``)
and the workers start from the last checkpoint. A new ``--name`` starts over.
At the handover sraybatch stops the driver with SIGINT, which Ray Train turns
into an abort of its controller between two control-loop steps, never in the
middle of writing that snapshot. When Ray drains a worker's node with a
deadline (a preemption), ``ray.train.get_preemption_info()`` says so and the
workers checkpoint at once, mid-epoch.

The training is a numpy linear regression (no torch needed): every worker
holds the same weights, and rank 0 checkpoints them after each epoch. Each
epoch prints one line ``epoch E: world size W, loss L``; a worker group that
starts from a checkpoint first prints ``resumed from epoch E step S``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import ray
import ray.train
from ray.train import Checkpoint, FailureConfig, RunConfig, ScalingConfig
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

# Gradient steps per epoch, and how often between them the workers ask
# whether a node is being preempted: each ask is a collective across the
# workers (tens of ms), so not after every step.
STEPS_PER_EPOCH = 20
PREEMPTION_CHECK_EVERY = 5


def _restore() -> tuple[np.ndarray, int, int]:
    """The weights, epoch and step to start from: the last checkpoint's, or zeros."""
    checkpoint = ray.train.get_checkpoint()
    if not checkpoint:
        return np.zeros(4), 0, 0
    with checkpoint.as_directory() as d:
        with open(os.path.join(d, "state.json")) as f:
            state = json.load(f)
    epoch, step = state["epoch"], state.get("step", STEPS_PER_EPOCH)
    if step >= STEPS_PER_EPOCH:  # an end-of-epoch checkpoint: the next epoch
        epoch, step = epoch + 1, 0
    if ray.train.get_context().get_world_rank() == 0:
        print(f"resumed from epoch {epoch} step {step}", flush=True)
    return np.array(state["w"]), epoch, step


def _report(metrics: dict, w: np.ndarray, epoch: int, step: int) -> None:
    """Reports metrics from every rank, and rank 0's weights as the checkpoint."""
    if ray.train.get_context().get_world_rank() != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump({"w": w.tolist(), "epoch": epoch, "step": step}, f)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))


def train_loop(config: dict) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 3.0])
    w, start, first_step = _restore()
    ctx = ray.train.get_context()
    saved_on_preemption = False
    for epoch in range(start, config["epochs"]):
        for step in range(first_step if epoch == start else 0, STEPS_PER_EPOCH):
            w -= 0.05 * 2 * x.T @ (x @ w - y) / len(x)
            time.sleep(config["epoch_seconds"] / STEPS_PER_EPOCH)
            if (step + 1) % PREEMPTION_CHECK_EVERY:
                continue
            # Every rank asks (it is a collective); a drained node's deadline
            # may fall before the epoch's end, so checkpoint now, once.
            info = ray.train.get_preemption_info()
            if info is not None and not saved_on_preemption and step + 1 < STEPS_PER_EPOCH:
                saved_on_preemption = True
                if ctx.get_world_rank() == 0:
                    print(f"preemption of ranks {info.preempted_ranks} (deadline_ms {info.deadline_ms}): "
                          f"checkpoint at epoch {epoch} step {step + 1}", flush=True)
                _report({"epoch": epoch, "step": step + 1}, w, epoch, step + 1)
        loss = float(np.mean((x @ w - y) ** 2))
        metrics = {"epoch": epoch, "world_size": ctx.get_world_size(), "loss": loss, "resumed_from": start}
        _report(metrics, w, epoch, STEPS_PER_EPOCH)
        if ctx.get_world_rank() == 0:
            print(f"epoch {epoch}: world size {ctx.get_world_size()}, loss {loss:.6f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-workers", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--epoch-seconds", type=float, default=1.0)
    p.add_argument("--resize-interval-s", type=float, default=2.0, help="how often the trainer looks for new GPUs")
    p.add_argument("--cpu", action="store_true", help="CPU workers (no GPU)")
    p.add_argument("--name", default="ray-train-elastic",
                   help="the run's name: a run started again with the same name resumes from its checkpoint")
    p.add_argument("--storage", default=None,
                   help="where checkpoints go, on a filesystem every job shares (default: <cluster dir>/train)")
    args = p.parse_args()
    storage = args.storage or os.path.join(os.environ.get("SRAYBATCH_CLUSTER_DIR", tempfile.gettempdir()), "train")
    if os.environ.get("SRAYBATCH_RESUMED") == "1":
        print(f"resumed after a head handover (generation {os.environ.get('SRAYBATCH_GENERATION', '?')}): "
              f"run {args.name} goes on from its snapshot in {storage}", flush=True)
    ray.init()
    trainer = DataParallelTrainer(
        train_loop,
        train_loop_config={"epochs": args.epochs, "epoch_seconds": args.epoch_seconds},
        scaling_config=ScalingConfig(
            num_workers=(1, args.max_workers),
            use_gpu=not args.cpu,
            elastic_resize_monitor_interval_s=args.resize_interval_s,
        ),
        run_config=RunConfig(
            name=args.name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=-1),
        ),
    )
    result = trainer.fit()
    print(f"done: {result.metrics}", flush=True)


if __name__ == "__main__":
    main()

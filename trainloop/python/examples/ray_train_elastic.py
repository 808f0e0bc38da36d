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

The training is a numpy linear regression (no torch needed): every worker
holds the same weights, and rank 0 checkpoints them after each epoch. Each
epoch prints one line ``epoch E: world size W, loss L``.
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


def train_loop(config: dict) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 3.0])
    w, start = np.zeros(4), 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                state = json.load(f)
        w, start = np.array(state["w"]), state["epoch"] + 1
    ctx = ray.train.get_context()
    for epoch in range(start, config["epochs"]):
        for _ in range(20):
            w -= 0.05 * 2 * x.T @ (x @ w - y) / len(x)
        loss = float(np.mean((x @ w - y) ** 2))
        time.sleep(config["epoch_seconds"])
        metrics = {"epoch": epoch, "world_size": ctx.get_world_size(), "loss": loss, "resumed_from": start}
        if ctx.get_world_rank() == 0:
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, "state.json"), "w") as f:
                    json.dump({"w": w.tolist(), "epoch": epoch}, f)
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))
            print(f"epoch {epoch}: world size {ctx.get_world_size()}, loss {loss:.6f}", flush=True)
        else:
            ray.train.report(metrics)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-workers", type=int, default=3)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--epoch-seconds", type=float, default=1.0)
    p.add_argument("--resize-interval-s", type=float, default=2.0, help="how often the trainer looks for new GPUs")
    p.add_argument("--cpu", action="store_true", help="CPU workers (no GPU)")
    args = p.parse_args()
    storage = os.path.join(os.environ.get("SRAYBATCH_CLUSTER_DIR", tempfile.gettempdir()), "train")
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
            name="ray-train-elastic",
            storage_path=storage,
            failure_config=FailureConfig(max_failures=-1),
        ),
    )
    result = trainer.fit()
    print(f"done: {result.metrics}", flush=True)


if __name__ == "__main__":
    main()

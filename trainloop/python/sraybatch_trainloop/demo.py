"""The built-in demo: an elastic data-parallel-looking training loop over every GPU of the cluster.

    python -m sraybatch_trainloop.demo --steps 20 --step-seconds 1 --gpus-per-actor 1

Connects with ``ray.init()`` (address from ``RAY_ADDRESS``), keeps one
``Trainer`` actor per GPU of every sraybatch node, and runs steps on whoever is
there.  Human lines go to stdout; JSON events go to ``$SRAYBATCH_EVENTS`` when
set.  ``--steps 0`` runs until SIGTERM.

Checkpoints go to ``--checkpoint-dir`` (default
``$SRAYBATCH_CLUSTER_DIR/checkpoints`` in a driver job; none outside one),
and a rerun resumes from them; with ``SRAYBATCH_RESUMED=1`` (a driver started
again after a head handover) its step counter goes on from the checkpoint's
step too, and ``--steps`` counts from the first run.  ``--checkpoint-every N``
also checkpoints every N steps.  The demo checkpoints when a time-limit warning
arrives (the head's or this job's: ``head_time_limit``), when this job's node
record turns ``draining``, and when a stop signal arrives.

SIGTERM (SLURM: the job was cancelled or reached its time limit; SIGKILL
follows after KillWait, 10 s by default) and SIGINT (Ctrl+C, or sraybatch at
a head handover, before it runs the driver again) stop the driver within a
poll of the pool (about 0.25 s): it abandons the step in flight, emits
``driver_stopping``, prints one line that says why, checkpoints (waiting at
most 3 s), kills its actors and exits.

Exit status:
    0    ``--steps`` steps done
    3    ``--max-wait-s`` passed without any actor
    130  stopped by SIGINT
    143  stopped by SIGTERM
130 and 143 are 128 + the signal's number, what a shell reports for a process
the signal killed.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import sys
import time
from typing import Callable, List, Optional

import ray

from .cluster import draining_from_env, time_limit_from_env
from .events import EventLog
from .pool import ElasticPool
from .checkpoint import read_step, write_step
from .state import ENV_CLUSTER_DIR, ENV_GENERATION, ENV_JOB, ENV_RESUMED

# A checkpoint on a stop signal must end well before SLURM's SIGKILL (KillWait
# after SIGTERM, 10 s by default), shutdown included.
CHECKPOINT_ON_STOP_S = 3.0
# A time-limit or drain warning leaves minutes (--drain-before); a stuck actor must not hold the loop forever.
CHECKPOINT_ON_WARNING_S = 60.0


class Trainer:
    """Fits y = x·w by SGD: PyTorch on the actor's GPU if it can, else numpy, else pure Python.

    Each actor trains its own copy on its own random samples (the point is the
    membership, not the model); an actor that joins starts from a live
    actor's weights, or from the checkpoint (``get_state``/``set_state``).
    """

    DIM = 16

    def __init__(self, step_seconds: float = 1.0):
        self.step_seconds = step_seconds
        self.rng = random.Random(os.getpid())
        self.w_true = [((i * 7) % 5 - 2) / 2 for i in range(self.DIM)]
        self.backend = "python"
        try:
            import torch

            if torch.cuda.is_available():
                self.backend = "torch"
                self.torch = torch
                self.device = torch.device("cuda")
                self.w_true_t = torch.tensor(self.w_true, device=self.device)
                self.w_t = torch.zeros(self.DIM, device=self.device, requires_grad=True)
                self.opt = torch.optim.SGD([self.w_t], lr=0.05)
        except Exception:  # no torch, or a broken CUDA install: fall back to the CPU
            self.backend = "python"
        if self.backend == "python":
            try:
                import numpy as np

                self.backend = "numpy"
                self.np = np
                self.np_rng = np.random.default_rng(os.getpid())
                self.w_np = np.zeros(self.DIM)
                self.w_true_np = np.array(self.w_true)
            except ImportError:
                self.w = [0.0] * self.DIM

    def _update_torch(self) -> float:
        torch = self.torch
        x = torch.randn(4096, self.DIM, device=self.device)
        y = x @ self.w_true_t + 0.1 * torch.randn(4096, device=self.device)
        loss = ((x @ self.w_t - y) ** 2).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return float(loss)

    def _update_numpy(self) -> float:
        np = self.np
        x = self.np_rng.normal(size=(256, self.DIM))
        err = x @ self.w_np - (x @ self.w_true_np + 0.1 * self.np_rng.normal(size=256))
        self.w_np -= 0.05 * 2 * x.T @ err / len(x)
        return float(np.mean(err**2))

    def _update_python(self) -> float:
        grad = [0.0] * self.DIM
        total = 0.0
        n = 32
        for _ in range(n):
            x = [self.rng.gauss(0, 1) for _ in range(self.DIM)]
            err = sum(a * (w - t) for a, w, t in zip(x, self.w, self.w_true)) - 0.1 * self.rng.gauss(0, 1)
            total += err * err
            for i, a in enumerate(x):
                grad[i] += 2 * err * a / n
        self.w = [w - 0.05 * g for w, g in zip(self.w, grad)]
        return total / n

    def train_step(self, step: int) -> dict:
        """One model update taking about ``step_seconds``; returns loss and duration."""
        t0 = time.perf_counter()
        if self.backend == "torch":
            # Keep the GPU busy for the whole step (visible in nvidia-smi).
            loss = self._update_torch()
            while time.perf_counter() - t0 < self.step_seconds:
                loss = self._update_torch()
            self.torch.cuda.synchronize()
        else:
            loss = self._update_numpy() if self.backend == "numpy" else self._update_python()
            # CPU actors may share few cores: sleep instead of spinning.
            time.sleep(max(0.0, self.step_seconds - (time.perf_counter() - t0)))
        return {"step": step, "loss": loss, "duration_s": time.perf_counter() - t0, "backend": self.backend}

    def get_state(self) -> dict:
        """The weights, as a list of floats whatever the backend (checkpoints move between them)."""
        if self.backend == "torch":
            return {"w": self.w_t.detach().cpu().tolist()}
        if self.backend == "numpy":
            return {"w": self.w_np.tolist()}
        return {"w": list(self.w)}

    def set_state(self, state: dict) -> None:
        w = [float(x) for x in state["w"]]
        if self.backend == "torch":
            with self.torch.no_grad():
                self.w_t.copy_(self.torch.tensor(w, device=self.device))
        elif self.backend == "numpy":
            self.w_np = self.np.array(w)
        else:
            self.w = w

    def where(self) -> dict:
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        }


# Signals that stop the driver, and the reason its one line gives.
_STOP_SIGNALS = {
    signal.SIGTERM: "the job was cancelled or reached its time limit",
    signal.SIGINT: "interrupted (Ctrl+C, or a head handover: sraybatch runs the driver again)",
}


class _StopOnSignal:
    """Records the first SIGTERM/SIGINT; the loop and the pool poll :meth:`requested`.

    The handler only records.  Raising from it instead unwinds through Ray's
    Cython ``ray.wait``, where the driver waits most of the time, and comes out
    as a ``SystemError`` traceback.
    """

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous = {s: signal.getsignal(s) for s in _STOP_SIGNALS}

    def install(self) -> None:
        for s in _STOP_SIGNALS:
            signal.signal(s, self._record)

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def requested(self) -> bool:
        return self.signum is not None

    def _record(self, signum, frame) -> None:
        if self.signum is None:  # the first signal says why; a later one changes nothing
            self.signum = signum


def _say(line: str) -> None:
    print(line, flush=True)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sraybatch_trainloop.demo", description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=0, help="steps to run; 0 = until SIGTERM (default 0)")
    p.add_argument("--step-seconds", type=float, default=1.0, help="duration of one step (default 1)")
    p.add_argument("--gpus-per-actor", type=float, default=1, help="GPUs per actor; 0 = one CPU actor per node")
    p.add_argument("--max-wait-s", type=float, default=0, help="give up (exit 3) after this long with no actor; 0 = wait forever")
    p.add_argument("--address", default=None, help="Ray address (default: $RAY_ADDRESS)")
    p.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps; 0 = only on warnings and stops")
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        help=f"where to checkpoint and resume from (default: ${ENV_CLUSTER_DIR}/checkpoints when set; '' = no checkpoints)",
    )
    args = p.parse_args(argv)
    if args.checkpoint_dir is None and os.environ.get(ENV_CLUSTER_DIR):
        args.checkpoint_dir = os.path.join(os.environ[ENV_CLUSTER_DIR], "checkpoints")
    args.checkpoint_dir = args.checkpoint_dir or None
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    stop = _StopOnSignal()
    stop.install()
    events = EventLog.from_env()
    pool = None
    try:
        ray.init(address=args.address)
        stop.install()  # ray.init replaced our SIGTERM handler with its own (sys.exit)
        pool = ElasticPool(
            Trainer,
            gpus_per_actor=args.gpus_per_actor,
            actor_kwargs={"step_seconds": args.step_seconds},
            events=events,
            log=_say,
            is_draining=draining_from_env(),
            checkpoint_dir=args.checkpoint_dir,
            should_stop=stop.requested,
        )
        progress = _Progress(pool, _resumed_step(args.checkpoint_dir))
        status = _train(args, pool, events, stop.requested, progress)
        if stop.requested():
            name = signal.Signals(stop.signum).name
            events.emit("driver_stopping", reason=name)
            _say(f"{name}: stopping ({_STOP_SIGNALS[stop.signum]})")
            progress.checkpoint(CHECKPOINT_ON_STOP_S)
            return 128 + stop.signum
        return status
    finally:
        if pool is not None:
            pool.shutdown()
        events.close()
        ray.shutdown()
        stop.restore()


class _Progress:
    """The last step done, and checkpoints that record it beside the pool's state."""

    def __init__(self, pool: ElasticPool, step: int):
        self.pool, self.step = pool, step

    def checkpoint(self, timeout_s: float) -> None:
        if self.pool.checkpoint_dir and self.pool.checkpoint(timeout_s=timeout_s):
            write_step(self.pool.checkpoint_dir, self.step)


def _resumed_step(checkpoint_dir: Optional[str]) -> int:
    """The step a driver started again after a handover goes on from; 0 for a first run."""
    if os.environ.get(ENV_RESUMED) != "1" or not checkpoint_dir:
        return 0
    step = read_step(checkpoint_dir)
    _say(f"resumed (generation {os.environ.get(ENV_GENERATION, '?')}): from step {step}")
    return step


def _train(args: argparse.Namespace, pool: ElasticPool, events: EventLog, stopping: Callable[[], bool], progress: _Progress) -> int:
    """Run steps until ``--steps`` are done (0), ``--max-wait-s`` passed without actors (3), or ``stopping()``."""
    time_limit = time_limit_from_env()
    warned = False
    is_draining, own_job = draining_from_env(), os.environ.get(ENV_JOB)
    own_drain_seen = not (is_draining and own_job)
    step, idle_since = progress.step, time.monotonic()
    _say("waiting for sraybatch nodes (one actor per GPU slot)")
    while (args.steps == 0 or step < args.steps) and not stopping():
        results = pool.run_step("train_step", step + 1, wait_for_actors_s=5.0)
        if stopping():
            break  # the pool abandoned the step: no results to report
        if not results:
            waited = time.monotonic() - idle_since
            if args.max_wait_s and waited >= args.max_wait_s:
                _say(f"no actors after {waited:.0f}s; giving up")
                return 3
            continue
        step += 1
        progress.step = step
        idle_since = time.monotonic()
        losses = [round(r.value["loss"], 6) for r in results]
        mean = sum(r.value["duration_s"] for r in results) / len(results)
        events.emit("step_done", step=step, actors=len(results), mean_duration_s=round(mean, 4), losses=losses)
        _say(f"step {step}: {len(results)} actors, mean {mean:.2f}s, losses [{', '.join(f'{x:.4g}' for x in losses)}]")
        why = []
        left = time_limit() if time_limit and not warned else None
        if left is not None:
            warned = True
            events.emit("head_time_limit", seconds_left=round(left, 1))
            why.append(f"time limit in {left:.0f}s")
        if not own_drain_seen and is_draining(own_job):
            own_drain_seen = True
            why.append(f"this job ({own_job}) is draining")
        if why:
            _say(f"{', '.join(why)}: checkpoint now")
            progress.checkpoint(CHECKPOINT_ON_WARNING_S)
        elif args.checkpoint_every and step % args.checkpoint_every == 0:
            progress.checkpoint(CHECKPOINT_ON_WARNING_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())

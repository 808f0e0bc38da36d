"""What the driver job knows about its sraybatch cluster, from the environment.

The driver job sets ``SRAYBATCH_CLUSTER_DIR``; each job's supervisor keeps its
record in ``<dir>/nodes/<job>.json``, whose ``phase`` becomes ``draining`` when
the job's SLURM time limit is near. Pass :func:`draining_from_env` as the
pool's ``is_draining`` so draining nodes get no new steps.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Dict, Optional, Tuple

ENV_VAR = "SRAYBATCH_CLUSTER_DIR"


def draining_from_env(max_age_s: float = 1.0) -> Optional[Callable[[str], bool]]:
    """Return ``is_draining(job)`` reading the cluster's node records, or None outside a driver job.

    Each record is read at most once per ``max_age_s``: the pool polls often
    and the records live on a shared filesystem.
    """
    cluster_dir = os.environ.get(ENV_VAR)
    if not cluster_dir:
        return None
    cache: Dict[str, Tuple[float, bool]] = {}

    def is_draining(job: str) -> bool:
        now = time.monotonic()
        hit = cache.get(job)
        if hit and now - hit[0] < max_age_s:
            return hit[1]
        try:
            with open(os.path.join(cluster_dir, "nodes", job + ".json")) as f:
                draining = json.load(f).get("phase") == "draining"
        except (OSError, ValueError):
            draining = False  # not written yet, or being replaced
        cache[job] = (now, draining)
        return draining

    return is_draining


def time_limit_from_env() -> Optional[Callable[[], Optional[float]]]:
    """Return ``seconds_left()`` for the training's nearest SLURM time limit, or None outside a driver job.

    The head's and this driver's supervisors record ``time_limit_at`` when
    SLURM warns them (``--drain-before``); the training ends with either job,
    so the sooner one counts. ``seconds_left()`` is None until a warning came.
    """
    cluster_dir = os.environ.get(ENV_VAR)
    jobs = [j for j in (os.environ.get("SRAYBATCH_HEAD_JOB"), os.environ.get("SRAYBATCH_JOB")) if j]
    if not cluster_dir or not jobs:
        return None

    def seconds_left() -> Optional[float]:
        limits = []
        for job in jobs:
            try:
                with open(os.path.join(cluster_dir, "nodes", job + ".json")) as f:
                    at = json.load(f).get("time_limit_at")
            except (OSError, ValueError):
                continue
            if at:
                limits.append(_parse_time(at))
        return min(limits) - time.time() if limits else None

    return seconds_left


def _parse_time(rfc3339: str) -> float:
    """Unix time of a Go-written RFC 3339 UTC timestamp (nanoseconds allowed)."""
    from datetime import datetime, timezone

    base, _, frac = rfc3339.rstrip("Z").partition(".")
    t = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)

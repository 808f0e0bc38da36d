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
from typing import Any, Callable, Dict, Optional, Tuple

from .state import (
    DRAINING_PHASE,
    ENV_CLUSTER_DIR,
    ENV_HEAD_JOB,
    ENV_JOB,
    PHASE_FIELD,
    TIME_LIMIT_FIELD,
    node_record_path,
    parse_time,
)


def draining_from_env(max_age_s: float = 1.0) -> Optional[Callable[[str], bool]]:
    """Return ``is_draining(job)`` reading the cluster's node records, or None outside a driver job.

    Each record is read at most once per ``max_age_s``: the pool polls often
    and the records live on a shared filesystem.
    """
    cluster_dir = os.environ.get(ENV_CLUSTER_DIR)
    if not cluster_dir:
        return None
    cache: Dict[str, Tuple[float, bool]] = {}

    def is_draining(job: str) -> bool:
        now = time.monotonic()
        hit = cache.get(job)
        if hit and now - hit[0] < max_age_s:
            return hit[1]
        draining = _read_record(cluster_dir, job).get(PHASE_FIELD) == DRAINING_PHASE
        cache[job] = (now, draining)
        return draining

    return is_draining


def time_limit_from_env() -> Optional[Callable[[], Optional[float]]]:
    """Return ``seconds_left()`` for the training's nearest SLURM time limit, or None outside a driver job.

    The head's and this driver's supervisors record ``time_limit_at`` when
    SLURM warns them (``--drain-before``); the training ends with either job,
    so the sooner one counts. ``seconds_left()`` is None until a warning came.
    """
    cluster_dir = os.environ.get(ENV_CLUSTER_DIR)
    jobs = [j for j in (os.environ.get(ENV_HEAD_JOB), os.environ.get(ENV_JOB)) if j]
    if not cluster_dir or not jobs:
        return None

    def seconds_left() -> Optional[float]:
        stamps = [_read_record(cluster_dir, job).get(TIME_LIMIT_FIELD) for job in jobs]
        limits = [parse_time(at) for at in stamps if at]
        return min(limits) - time.time() if limits else None

    return seconds_left


def _read_record(cluster_dir: str, job: str) -> Dict[str, Any]:
    """Job ``job``'s node record, or {} while it is not written yet or being replaced."""
    try:
        with open(node_record_path(cluster_dir, job)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}

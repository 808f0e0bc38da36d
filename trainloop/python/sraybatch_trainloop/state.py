"""The names the Go side and this package share: Ray resources, the cluster directory, the environment.

Each is defined once here for Python.  ``testdata/shared-state.json`` at the
repository root defines them for both sides; ``tests/test_shared_state.py``
checks these against it, as the Go tests check Go's, so a rename on one side
fails a test on the other.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from typing import Dict, Optional

# Every sraybatch Ray node advertises ``sraybatch_job_<key>: 1``; <key> is its
# SLURM job id ("8") or array job id _ task id ("7_0").
JOB_RESOURCE_PREFIX = "sraybatch_job_"
# Exact match only: placement groups derive resources such as
# sraybatch_job_7_0_group_<pg id> from a bundle's sraybatch_job_7_0.
_JOB_RESOURCE = re.compile(re.escape(JOB_RESOURCE_PREFIX) + r"([0-9]+(?:_[0-9]+)?)")

# Environment of a driver job (set by its Go supervisor).
ENV_CLUSTER_DIR = "SRAYBATCH_CLUSTER_DIR"  # the cluster directory on the shared filesystem
ENV_EVENTS = "SRAYBATCH_EVENTS"  # the JSON-lines event file the driver appends to
ENV_JOB = "SRAYBATCH_JOB"  # this driver job's key
ENV_HEAD_JOB = "SRAYBATCH_HEAD_JOB"  # the head job's key
ENV_GENERATION = "SRAYBATCH_GENERATION"  # the head generation (rollover clusters)
ENV_RESUMED = "SRAYBATCH_RESUMED"  # "1": started again after a head handover; resume from the checkpoint

# Paths inside the cluster directory, "/"-separated, formatted with job=<key>.
NODE_RECORD_PATH = "nodes/{job}.json"  # each job's supervisor keeps its record here
EVENTS_PATH = "events/{job}.jsonl"  # where the Go side points a driver job's SRAYBATCH_EVENTS

# Fields of a node record.
PHASE_FIELD = "phase"
PHASES = ("starting", "running", "draining", "ended", "failed")
DRAINING_PHASE = "draining"  # the job's SLURM time limit is near: no new work on its node
TIME_LIMIT_FIELD = "time_limit_at"  # RFC 3339 UTC, written when SLURM warned of the time limit


def job_resource(job: str) -> str:
    """The Ray resource that pins work to job ``job``'s node (``7_0`` -> ``sraybatch_job_7_0``)."""
    return JOB_RESOURCE_PREFIX + job


def job_key(resources: Dict[str, float]) -> Optional[str]:
    """The sraybatch job key in a node's resources (``sraybatch_job_7_0`` -> ``7_0``), or None.

    Should several resources match, the smallest name wins, so that the answer
    does not depend on the order Ray lists them in.
    """
    names = [name for name in resources if _JOB_RESOURCE.fullmatch(name)]
    return min(names)[len(JOB_RESOURCE_PREFIX):] if names else None


def node_record_path(cluster_dir: str, job: str) -> str:
    return os.path.join(cluster_dir, *NODE_RECORD_PATH.format(job=job).split("/"))


def parse_time(rfc3339: str) -> float:
    """Unix time of a Go-written RFC 3339 UTC timestamp (``time.RFC3339Nano``: nanoseconds allowed)."""
    base, _, frac = rfc3339.rstrip("Z").partition(".")
    t = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)

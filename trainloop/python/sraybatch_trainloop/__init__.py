"""sraybatch_trainloop: an elastic Ray actor pool for sraybatch clusters (one actor per GPU slot, nodes come and go)."""

import sys

import ray.cloudpickle

from .cluster import draining_from_env, time_limit_from_env
from .events import EventLog, read_events, validate
from .pool import ActorInfo, DataParallelStep, ElasticPool, ExcludedNode, StepResult
from .state import job_key

# Ship this package's classes and functions (e.g. demo.Trainer) to workers by
# value: the driver job has the package on PYTHONPATH, worker nodes need not.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

__all__ = [
    "ActorInfo",
    "DataParallelStep",
    "ElasticPool",
    "EventLog",
    "ExcludedNode",
    "StepResult",
    "draining_from_env",
    "job_key",
    "read_events",
    "time_limit_from_env",
    "validate",
]

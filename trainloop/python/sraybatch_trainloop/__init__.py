"""sraybatch_trainloop: an elastic Ray actor pool for sraybatch clusters (one actor per GPU, nodes come and go)."""

from .events import EventLog, read_events, validate
from .pool import ActorInfo, ElasticPool, StepResult, job_key

__all__ = ["ActorInfo", "ElasticPool", "EventLog", "StepResult", "job_key", "read_events", "validate"]

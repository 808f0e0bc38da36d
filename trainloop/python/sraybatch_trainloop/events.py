"""JSON-lines event log shared by the elastic pool, the demo driver and the Go side.

One event is one line: a JSON object with a ``ts`` (Unix time, float seconds),
an ``event`` name, and that event's fields.  Lines are appended and flushed one
at a time, so a reader can ``tail -f`` the file and parse each complete line::

    {"ts": 1764108000.123, "event": "node_joined", "node_id": "85477a93...", "job": "7_0", "gpus": 2}

Events and their fields (``?`` marks a field that may be absent or null):

``node_joined``      node_id: str, job: str, gpus: number
    The pool saw a new ALIVE Ray node carrying ``sraybatch_job_<job>``.
``actor_spawned``    actor: str, node_id: str, job: str, placement_group: str, gpu_index?: str
    An actor answered its first call and joined the rotation (it gets work
    from the next step on).  ``actor`` is the Ray ActorID (hex),
    ``placement_group`` the PlacementGroupID (hex), ``gpu_index`` the actor's
    ``CUDA_VISIBLE_DEVICES`` as Ray set it ("3", or "2,3" for a 2-GPU actor;
    null for a CPU-only actor).
``actor_lost``       actor: str, node_id: str, job: str, reason: str, error?: str
    The actor left the pool (killed; its placement group removed, but kept
    for a replacement after ``actor_died``).  ``reason`` is one of
    ``node_left`` (its node is gone), ``node_draining`` (retired after its
    last step), ``actor_died`` (a call failed; ``error`` says how; also used
    when the call's failure arrives before Ray marks the node dead),
    ``node_excluded`` (its node was left out of the pool, see below).
    Every ``actor_lost`` follows the same actor's ``actor_spawned``; actors
    that fail before becoming ready are only logged (human lines).
``actor_restarted``  actor: str, node_id: str, job: str, attempt: int, reason: str
    An actor died while its node stayed alive; ``actor`` is its replacement,
    started in the same placement group (the same GPUs) after a backoff.
    ``attempt`` counts the slot's failures in a row (1, 2, ...), ``reason``
    is how the previous actor died.  The replacement's ``actor_spawned``
    follows once it joined the rotation.
``state_synced``     job: str, actor: str, source: str, bytes: int, seconds: number
    A replica (an actor class with ``get_state``/``set_state``) received its
    state before joining the rotation; ``source`` is ``peer`` (a live
    actor's ``get_state``) or ``checkpoint`` (no live peer: the last
    checkpoint); ``bytes`` as stored in Ray's object store (the file's size
    for a checkpoint); ``seconds`` from the request to the state in place.
    Precedes the actor's ``actor_spawned``.
``checkpoint_written``  path: str, bytes: int, seconds: number
    The pool wrote one live actor's state to ``path`` (temp file + rename).
``node_excluded``    node_id: str, job: str, reason: str
    An actor slot of the node failed more than ``max_restarts`` times in a
    row: the node gets no more actors (its others are lost with reason
    ``node_excluded``), while its SLURM job still holds its GPUs.
``node_draining``    node_id: str, job: str
    ``is_draining(job)`` turned true; the node gets no new steps.
``node_left``        node_id: str, job: str
    The node is no longer ALIVE in Ray (its SLURM job ended or failed).
``step_done``        step: int, actors: int, mean_duration_s: number, losses: list
    One training step finished on ``actors`` survivors (emitted by the driver
    loop, e.g. the demo).
``head_time_limit``  seconds_left: number
    Reserved for the driver: the head job's SLURM time limit is near.
``driver_stopping``  reason: str
    The driver stops before its work is done, e.g. on a signal: ``reason`` is
    the signal's name (``SIGTERM``: the job was cancelled or reached its time
    limit; ``SIGINT``: interrupted, or a head handover).
``autoscaler_decision``  submitted: list, cancelled: list, drained: list, reason: str
    Written by the head job's autoscaler (Go) to ``events/autoscaler.jsonl``:
    the worker jobs it submitted, the pending ones it cancelled, the idle ones
    Ray drained, and why (also when it decided to do nothing, once per reason).
``job_state``        job: str, role: str, slurm_state: str, membership: str, gpus: int
    Written by the head job's supervisor (Go) to ``events/cluster.jsonl``
    whenever it sees a job's SLURM state or Ray membership change (the first
    sighting included). ``membership`` is one of ``MEMBERSHIPS``.
``cluster_sample``   gpus_requested: int, gpus_joined: int, gpus_allocated: number, jobs: int
    Also the head's, to ``events/cluster.jsonl``: GPUs the cluster's live jobs
    asked SLURM for, GPUs of nodes joined to Ray, GPUs Ray has allocated to
    tasks and actors (fractional), and live jobs; written when a value
    changes, and at least once a minute.

Readers should ignore fields they do not know: new optional fields may be added.

Go defines each of these events once, as a struct of ``internal/events``;
``SCHEMA`` below and those structs are both checked against the names and
required fields of ``testdata/shared-state.json``.

The file named by the environment variable ``SRAYBATCH_EVENTS`` (set by the Go
side) is appended to; without it, ``EventLog.from_env()`` writes nothing.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import IO, Any, Dict, List, Optional, Tuple, Union

from .state import ENV_EVENTS

_STR = (str,)
_NUM = (int, float)
_OPT_STR = (str, type(None))

# event name -> {field: (allowed types, required)}
SCHEMA: Dict[str, Dict[str, Tuple[tuple, bool]]] = {
    "node_joined": {"node_id": (_STR, True), "job": (_STR, True), "gpus": (_NUM, True)},
    "actor_spawned": {
        "actor": (_STR, True),
        "node_id": (_STR, True),
        "job": (_STR, True),
        "placement_group": (_STR, True),
        "gpu_index": (_OPT_STR, False),
    },
    "actor_lost": {
        "actor": (_STR, True),
        "node_id": (_STR, True),
        "job": (_STR, True),
        "reason": (_STR, True),
        "error": (_OPT_STR, False),
    },
    "actor_restarted": {
        "actor": (_STR, True),
        "node_id": (_STR, True),
        "job": (_STR, True),
        "attempt": ((int,), True),
        "reason": (_STR, True),
    },
    "state_synced": {
        "job": (_STR, True),
        "actor": (_STR, True),
        "source": (_STR, True),
        "bytes": ((int,), True),
        "seconds": (_NUM, True),
    },
    "checkpoint_written": {"path": (_STR, True), "bytes": ((int,), True), "seconds": (_NUM, True)},
    "node_excluded": {"node_id": (_STR, True), "job": (_STR, True), "reason": (_STR, True)},
    "node_draining": {"node_id": (_STR, True), "job": (_STR, True)},
    "node_left": {"node_id": (_STR, True), "job": (_STR, True)},
    "step_done": {
        "step": ((int,), True),
        "actors": ((int,), True),
        "mean_duration_s": (_NUM, True),
        "losses": ((list,), True),
    },
    "head_time_limit": {"seconds_left": (_NUM, True)},
    "driver_stopping": {"reason": (_STR, True)},
    "autoscaler_decision": {
        "submitted": ((list,), True),
        "cancelled": ((list,), True),
        "drained": ((list,), True),
        "reason": (_STR, True),
    },
    "job_state": {
        "job": (_STR, True),
        "role": (_STR, True),
        "slurm_state": (_STR, True),
        "membership": (_STR, True),
        "gpus": ((int,), True),
        "type": (_STR, False),
    },
    "cluster_sample": {
        "gpus_requested": ((int,), True),
        "gpus_joined": ((int,), True),
        "gpus_allocated": (_NUM, True),
        "jobs": ((int,), True),
    },
}

LOST_REASONS = ("node_left", "node_draining", "actor_died", "node_excluded")
SYNC_SOURCES = ("peer", "checkpoint")
MEMBERSHIPS = ("waiting", "joined", "draining", "lost", "failed", "ended")


def validate(record: Dict[str, Any]) -> List[str]:
    """Return the ways ``record`` (one parsed line) breaks the schema; [] if none."""
    problems = []
    if not isinstance(record.get("ts"), _NUM) or isinstance(record.get("ts"), bool):
        problems.append("ts: want a number")
    name = record.get("event")
    fields = SCHEMA.get(name)
    if fields is None:
        return problems + [f"event: unknown name {name!r}"]
    for field, (types, required) in fields.items():
        if field not in record:
            if required:
                problems.append(f"{name}.{field}: missing")
            continue
        value = record[field]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            problems.append(f"{name}.{field}: {value!r} is not {'/'.join(t.__name__ for t in types)}")
    if name == "actor_lost" and record.get("reason") not in LOST_REASONS:
        problems.append(f"actor_lost.reason: {record.get('reason')!r} not in {LOST_REASONS}")
    if name == "state_synced" and record.get("source") not in SYNC_SOURCES:
        problems.append(f"state_synced.source: {record.get('source')!r} not in {SYNC_SOURCES}")
    if name == "job_state" and record.get("membership") not in MEMBERSHIPS:
        problems.append(f"job_state.membership: {record.get('membership')!r} not in {MEMBERSHIPS}")
    return problems


class EventLog:
    """Append events as JSON lines to a file path or a text stream.

    ``EventLog(None)`` is a valid, silent log.  Safe to share between threads.
    """

    def __init__(self, path_or_stream: Union[str, "os.PathLike[str]", IO[str], None] = None):
        self._lock = threading.Lock()
        self._owned = False
        self._stream: Optional[IO[str]] = None
        if isinstance(path_or_stream, (str, os.PathLike)):
            # Line-buffered append: concurrent writers (driver + Go reader) see whole lines.
            self._stream = open(path_or_stream, "a", buffering=1, encoding="utf-8")
            self._owned = True
        elif path_or_stream is not None:
            self._stream = path_or_stream

    @classmethod
    def from_env(cls) -> "EventLog":
        """Log to the file named by ``$SRAYBATCH_EVENTS``, or nowhere if it is unset."""
        return cls(os.environ.get(ENV_EVENTS) or None)

    def emit(self, event: str, **fields: Any) -> Dict[str, Any]:
        """Write one event line and flush it; returns the record."""
        if event not in SCHEMA:
            raise ValueError(f"unknown event {event!r}")
        record = {"ts": time.time(), "event": event, **fields}
        line = json.dumps(record, separators=(",", ":"), default=str)
        with self._lock:
            if self._stream is not None:
                self._stream.write(line + "\n")
                self._stream.flush()
        return record

    def close(self) -> None:
        with self._lock:
            if self._owned and self._stream is not None:
                self._stream.close()
            self._stream = None

    def __enter__(self) -> "EventLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_events(path: Union[str, "os.PathLike[str]"]) -> List[Dict[str, Any]]:
    """Parse a JSON-lines event file (skips a trailing partial line)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n") and line.strip():
                out.append(json.loads(line))
    return out

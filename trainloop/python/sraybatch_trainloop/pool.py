"""An elastic pool of Ray actors: one actor per GPU slot of every sraybatch node, while nodes come and go.

Each sraybatch SLURM job runs one Ray node that advertises all its GPUs and a
custom resource ``sraybatch_job_<key>`` (value 1; ``<key>`` is the SLURM job
id, e.g. ``8`` or ``7_0``).  The pool polls ``ray.nodes()`` (one cheap GCS
call), and for every new ALIVE node with such a resource creates one placement
group per GPU slot -- bundle ``{"GPU": gpus_per_actor, "sraybatch_job_<key>":
0.001}``, which pins it to that node -- and one actor in each.  Ray assigns each
bundle its own GPUs (or, for ``gpus_per_actor < 1``, its share of one GPU), so
no GPU ever holds more actors than ``1 / gpus_per_actor``.  Actors join the
rotation once their placement group is ready and they answered a first call;
nodes that die take their actors out of the rotation, mid-step included.

Usage::

    import ray
    from sraybatch_trainloop import ElasticPool, EventLog

    class Worker:                          # a plain class; the pool makes it a Ray actor
        def __init__(self, lr):
            self.lr = lr

        def step(self, k):
            return {"loss": 1.0 / (k + 1)}

    ray.init()                             # address from RAY_ADDRESS
    pool = ElasticPool(Worker, actor_args=(0.1,), gpus_per_actor=1,
                       events=EventLog.from_env(), log=print)
    try:
        for k in range(100):
            results = pool.run_step("step", k)      # the survivors' results
            for r in results:
                print(r.actor.actor_id[:8], r.actor.cuda_visible_devices, r.value["loss"])
    finally:
        pool.shutdown()

``run_step`` never raises because a node left or an actor died: the step ends
on the survivors, and actors on new nodes join at the next step.  Exceptions
raised by the actor method itself (bugs) do propagate.  Use a pool from one
thread.  Worker nodes must be able to import ``actor_cls``'s module (Ray adds
the driver's working directory to the workers' ``sys.path``; classes defined in
the driver script are shipped by value).

Two kinds of actors
-------------------

*Independent actors* (the class has no ``get_state``/``set_state``, or
``sync_state=False``): every actor starts from its own ``__init__`` and keeps
its own state, as generation or environment actors of an RL rollout do.  An
actor joins the rotation as soon as it answered its first call.

*Replicas* (the class defines ``get_state()`` and ``set_state(state)``): every
actor that joins -- on a node that joined, or restarted after a crash --
first receives the state of a live peer, so all replicas hold the same state
when a step starts.  At the start of a step (in ``run_step``,
``run_data_parallel_step``, ``wait_for_actors`` or ``refresh``, never while a
step's calls are in flight) the pool calls ``get_state`` on one peer and
passes the resulting ObjectRef to every newcomer's ``set_state``: the state
goes through the object store once per join, not once per step, and never
through the driver.  Only then does the newcomer enter the rotation.  With no
live peer a newcomer restores the last checkpoint (``checkpoint_dir``);
without one, the first newcomer keeps its initial state and the others copy
it.  ``checkpoint()`` writes one live actor's ``get_state()`` to
``<checkpoint_dir>/state.pkl`` (pickle, temp file + rename: a reader sees the
old file or the new one), so a pool started later with the same
``checkpoint_dir`` resumes from it.  ``run_data_parallel_step`` makes a step a
synchronous data-parallel step across the replicas::

    class Replica:
        def __init__(self):
            self.w = np.zeros(8)
        def grad_step(self, batch, *, rank, world_size):   # this replica's shard of the data
            ...
            return {"weights": self.w - lr * grad, "loss": loss}
        def set_weights(self, mean):                        # the mean of every replica's result
            self.w = mean["weights"].copy()
        def get_state(self):
            return self.w
        def set_state(self, w):
            self.w = w.copy()

    step = pool.run_data_parallel_step("grad_step", batch, apply_method="set_weights")
    print(step.mean["loss"], len(step.results))

Health
------

An actor that dies while its node stays alive (its process crashed or was
killed) is replaced in the same placement group -- the same GPUs -- after
``restart_backoff_s``, doubling with each failure in a row: ``actor_restarted``
says which attempt it is, and a replica gets its state as any newcomer does.
A slot that fails more than ``max_restarts`` times in a row (a finished call
ends a row) gets its whole node left out of the pool: ``node_excluded``, its
actors stopped, listed by ``excluded()``.  Its SLURM job keeps the node's GPUs
until it ends; cancel it to give them back.

To stop early (SIGTERM from SLURM, Ctrl-C), pass ``should_stop`` and let the
signal handler only set what it reads::

    stop = threading.Event()
    ray.init()                             # installs its own SIGTERM handler: replace it after
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    pool = ElasticPool(Worker, should_stop=stop.is_set)
    for k in range(100):
        results = pool.run_step("step", k)   # [] within poll_interval_s of stop.set()
        if stop.is_set():
            break
    pool.shutdown()

A handler must not raise instead: the main thread spends its time inside
Ray's ``ray.wait``, and an exception raised there by a signal handler comes
out as ``SystemError: <cyfunction CoreWorker.wait ...> returned a result with
an exception set`` (Ray 2.60; only ``KeyboardInterrupt`` passes through, but
it may still land in the middle of the pool's bookkeeping).
"""

from __future__ import annotations

import math
import numbers
import os
import pickle
import re
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, NodeDiedError, ObjectLostError, RayActorError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from .events import EventLog
from .state import job_key, job_resource

# RayActorError covers ActorDiedError and ActorUnavailableError.  ObjectLostError:
# a large result stored on a node that died before we fetched it.
_ACTOR_GONE = (RayActorError, NodeDiedError, ObjectLostError)

CHECKPOINT_FILE = "state.pkl"


def _where_fn() -> Callable[[Any], Dict[str, Any]]:
    # Built inside a function so cloudpickle ships it by value: worker nodes need
    # not import this package to run the pool's probe on a user's actor class.
    def where(_actor_self):
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        }

    return where


_WHERE = _where_fn()


@dataclass(frozen=True)
class ActorInfo:
    """One actor in the rotation (a snapshot; the pool may drop the actor later)."""

    seq: int  # pool-local number, 1, 2, ... in spawn order
    actor_id: str  # Ray ActorID, hex
    node_id: str  # Ray NodeID, hex
    job: str  # SLURM job key of the node
    placement_group: str  # PlacementGroupID, hex
    cuda_visible_devices: Optional[str]  # as Ray set it in the actor; None for CPU-only actors
    handle: Any = field(repr=False, compare=False)  # ray.actor.ActorHandle
    # time.time() of node_seen, pg_created, pg_ready, actor_ready, state_synced (replicas only), in_rotation
    timings: Dict[str, float] = field(repr=False, compare=False, default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    actor: ActorInfo
    value: Any


class DataParallelStep(NamedTuple):
    """What ``run_data_parallel_step`` returns: each actor's result, and their mean that every actor applied."""

    results: List[StepResult]
    mean: Any  # None when results is empty


@dataclass(frozen=True)
class ExcludedNode:
    """A node the pool left out after repeated actor failures; its SLURM job still holds its GPUs."""

    node_id: str
    job: str
    gpus: float
    reason: str


class _Node:
    def __init__(self, node_id: str, job: str, gpus: float, capacity: int):
        self.node_id = node_id
        self.job = job
        self.gpus = gpus
        self.capacity = capacity  # how many slots (actors) the node's GPUs make
        self.seen_at = time.time()
        self.draining = False
        self.excluded: Optional[str] = None  # why, once left out of the pool
        self.slots: List["_Slot"] = []

    @property
    def short(self) -> str:
        return self.node_id[:8]

    @property
    def members(self) -> List["_Member"]:
        return [s.member for s in self.slots if s.member is not None]


class _Slot:
    """One placement group on a node: the GPUs of one actor, kept across that actor's restarts."""

    def __init__(self, node: _Node, pg):
        self.node = node
        self.pg = pg
        self.created_at = time.time()
        self.ready_at: Optional[float] = None
        self.member: Optional["_Member"] = None
        self.failures = 0  # actor deaths in a row; a finished step or apply call ends the row
        self.last_error = ""
        self.restart_at: Optional[float] = None  # time.monotonic() when the next actor is due


class _Member:
    def __init__(self, seq: int, slot: _Slot, handle):
        self.seq = seq
        self.slot = slot
        self.node = slot.node
        self.handle = handle
        self.actor_id = handle._actor_id.hex()
        self.where: Optional[Dict[str, Any]] = None  # the first call's answer, once ready
        self.info: Optional[ActorInfo] = None  # set once in the rotation
        self.removed = False
        self.timings = {"node_seen": slot.node.seen_at, "pg_created": slot.created_at}
        if slot.ready_at is not None:
            self.timings["pg_ready"] = slot.ready_at


class ElasticPool:
    """One actor per GPU slot of every ALIVE Ray node that carries a ``sraybatch_job_<key>`` resource.

    Args:
        actor_cls: a plain class (not ``@ray.remote``); the pool wraps it.  With
            ``get_state()`` and ``set_state(state)`` its actors are replicas
            that newcomers copy (see the module docstring).
        gpus_per_actor: GPUs per actor: a fraction of one GPU (0.5: two actors
            per GPU), one, or a whole number of GPUs of one node (2: one actor
            per two GPUs).  A node with G GPUs gets floor(G / gpus_per_actor)
            actors (a fraction: floor(1 / gpus_per_actor) per GPU, as Ray
            never splits one actor over two GPUs); the log says what stays
            idle.  0 means one CPU actor per sraybatch node (GPUs or not).
        cpus_per_actor: logical CPUs reserved per actor.  0 by default so that
            actors never wait for CPUs that the node's other processes declared.
        actor_args, actor_kwargs: passed to ``actor_cls(...)``.
        actor_options: extra ``.options()`` for the actor (e.g. ``runtime_env``).
        events: an :class:`EventLog` for the JSON events; None: no events.
        log: called with one human-readable line per change (e.g. ``print``).
        is_draining: ``is_draining(job_key) -> bool``, polled at every refresh
            (keep it cheap); once true the node gets no new steps and its
            actors are killed after the step in flight.
        poll_interval_s: how often a waiting ``run_step`` refreshes membership.
        max_restarts: restarts of a slot's actor in a row before its node is
            left out of the pool.
        restart_backoff_s: delay before the first restart in a row; each
            further one waits twice as long as the one before.
        sync_state: False keeps replicas independent (newcomers start from
            ``__init__``) even though the class has ``get_state``/``set_state``.
            The attribute of that name says whether this pool moves state.
        checkpoint_dir: where ``checkpoint()`` writes and newcomers with no
            live peer restore from (replicas only).  None: no checkpoints.
        should_stop: ``should_stop() -> bool``, checked every ``poll_interval_s``
            while the pool waits -- for a step, for actors, for state on its
            way to newcomers (keep it cheap, e.g. ``threading.Event.is_set``).
            Once it is true they return within ``poll_interval_s``: the step
            methods return empty and abandon their step, whose calls run on
            until ``shutdown()`` kills the actors.  None: never stop early.
    """

    def __init__(
        self,
        actor_cls: type,
        *,
        gpus_per_actor: float = 1,
        cpus_per_actor: float = 0,
        actor_args: Tuple = (),
        actor_kwargs: Optional[Dict[str, Any]] = None,
        actor_options: Optional[Dict[str, Any]] = None,
        events: Optional[EventLog] = None,
        log: Optional[Callable[[str], None]] = None,
        is_draining: Optional[Callable[[str], bool]] = None,
        poll_interval_s: float = 0.25,
        max_restarts: int = 3,
        restart_backoff_s: float = 1.0,
        sync_state: bool = True,
        checkpoint_dir: Optional[str] = None,
        should_stop: Optional[Callable[[], bool]] = None,
    ):
        if isinstance(actor_cls, ray.actor.ActorClass):
            raise TypeError("ElasticPool wants the plain class, not the @ray.remote one")
        if gpus_per_actor < 0 or cpus_per_actor < 0:
            raise ValueError("gpus_per_actor and cpus_per_actor must be >= 0")
        if gpus_per_actor > 1 and not float(gpus_per_actor).is_integer():
            raise ValueError(f"gpus_per_actor {gpus_per_actor}: above 1 it must be a whole number (Ray splits one GPU only)")
        has_state = [callable(getattr(actor_cls, name, None)) for name in ("get_state", "set_state")]
        if any(has_state) and not all(has_state):
            raise TypeError(f"{actor_cls.__name__} defines only one of get_state and set_state; replicas need both")
        self.sync_state = all(has_state) and sync_state
        if checkpoint_dir is not None and not self.sync_state:
            raise ValueError("checkpoint_dir needs an actor class with get_state and set_state, and sync_state=True")
        self._remote_cls = ray.remote(actor_cls)
        self.gpus_per_actor = gpus_per_actor
        self.cpus_per_actor = cpus_per_actor
        self._args = tuple(actor_args)
        self._kwargs = dict(actor_kwargs or {})
        self._options = dict(actor_options or {})
        self._events = events or EventLog(None)
        self._log = log or (lambda line: None)
        self._is_draining = is_draining
        self.poll_interval_s = poll_interval_s
        self.max_restarts = max_restarts
        self.restart_backoff_s = restart_backoff_s
        self.checkpoint_dir = checkpoint_dir
        self._should_stop = should_stop or (lambda: False)

        self._nodes: Dict[str, _Node] = {}
        self._unused_nodes: set = set()  # sraybatch nodes too small for one actor (logged once)
        self._pending: Dict[Any, Tuple[_Member, str]] = {}  # ObjectRef -> (member, "pg" | "ping")
        self._busy: set = set()  # members with a call in flight (a step, or a donor's get_state): not retired yet
        self._seq = 0

    # ---- membership ---------------------------------------------------------

    def _rotation(self) -> List[_Member]:
        """Members in the rotation (ready, state received, node not draining), in spawn order."""
        members = [m for n in self._nodes.values() if not n.draining for m in n.members if m.info]
        return sorted(members, key=lambda m: m.seq)

    @property
    def actors(self) -> List[ActorInfo]:
        """The actors in the rotation (ready, not draining), in spawn order."""
        return [m.info for m in self._rotation()]

    @property
    def size(self) -> int:
        """How many actors the next step runs on."""
        return len(self._rotation())

    @property
    def pending(self) -> int:
        """Actors on their way into the rotation: starting, waiting for state, or due to restart."""
        return sum(
            1
            for n in self._nodes.values()
            for s in n.slots
            if (s.member is None and s.restart_at is not None) or (s.member is not None and s.member.info is None)
        )

    def excluded(self) -> List[ExcludedNode]:
        """Nodes left out after repeated actor failures, while they are still in the cluster."""
        return [ExcludedNode(n.node_id, n.job, n.gpus, n.excluded) for n in self._nodes.values() if n.excluded]

    def _capacity(self, resources: Dict[str, float]) -> int:
        if self.gpus_per_actor == 0:
            return 1
        gpus = resources.get("GPU", 0)
        # The epsilons keep 1.0 / 0.1-style float division from losing a slot.
        if self.gpus_per_actor < 1:  # Ray never splits one bundle over two GPUs: count per GPU
            return math.floor(gpus + 1e-9) * math.floor(1 / self.gpus_per_actor + 1e-9)
        return math.floor(gpus / self.gpus_per_actor + 1e-9)

    def refresh(self) -> None:
        """Sync with the cluster, then give waiting replicas their state and let them into the rotation.

        One ``ray.nodes()`` call and non-blocking checks of starting actors;
        it blocks only while state moves to newcomers.  Call it between steps
        only: a newcomer copies its peer's state as of now.
        """
        self._sync_membership()
        self._admit()

    def _sync_membership(self) -> None:
        """Everything ``refresh`` does but moving state: safe while a step's calls are in flight."""
        alive: Dict[str, Tuple[str, float, int]] = {}
        for n in ray.nodes():
            if not n.get("Alive"):
                continue
            res = n.get("Resources") or {}
            job = job_key(res)
            if job is None:
                continue
            capacity = self._capacity(res)
            if capacity > 0:
                alive[n["NodeID"]] = (job, res.get("GPU", 0), capacity)
            elif n["NodeID"] not in self._unused_nodes:
                self._unused_nodes.add(n["NodeID"])
                self._log(self._capacity_line(n["NodeID"][:8], job, res.get("GPU", 0), 0))

        for node_id in list(self._nodes):
            if node_id not in alive:
                self._drop_node(self._nodes.pop(node_id))

        for node_id, (job, gpus, capacity) in alive.items():
            if node_id not in self._nodes:
                node = self._nodes[node_id] = _Node(node_id, job, gpus, capacity)
                self._events.emit("node_joined", node_id=node_id, job=job, gpus=_number(gpus))
                self._log(f"detected new node {node.short} (job {job}, {_number(gpus)} GPUs)")
                if self.gpus_per_actor and gpus - capacity * self.gpus_per_actor > 1e-9:
                    self._log(self._capacity_line(node.short, job, gpus, capacity))

        self._poll_pending()

        now = time.monotonic()
        for node in self._nodes.values():
            if node.excluded:
                continue
            if not node.draining and self._is_draining is not None and self._is_draining(node.job):
                node.draining = True
                self._events.emit("node_draining", node_id=node.node_id, job=node.job)
                self._log(f"node {node.short} (job {node.job}) is draining")
            if node.draining:
                for slot in list(node.slots):
                    if slot.member not in self._busy:
                        self._remove_slot(slot, "node_draining")
                continue
            while len(node.slots) < node.capacity:
                self._add_slot(node)
            for slot in node.slots:
                if slot.member is None and slot.restart_at is not None and slot.restart_at <= now:
                    self._restart(slot)

    def _capacity_line(self, short: str, job: str, gpus: float, capacity: int) -> str:
        idle = gpus - capacity * self.gpus_per_actor
        return (
            f"node {short} (job {job}): {_count(gpus, 'GPU')}, {_number(self.gpus_per_actor)} per actor: "
            f"{_count(capacity, 'actor')}, {_count(idle, 'GPU')} idle"
        )

    def _add_slot(self, node: _Node) -> None:
        bundle: Dict[str, float] = {job_resource(node.job): 0.001}
        if self.gpus_per_actor:
            bundle["GPU"] = self.gpus_per_actor
        if self.cpus_per_actor:
            bundle["CPU"] = self.cpus_per_actor
        pg = placement_group([bundle], strategy="STRICT_PACK", name=f"sraybatch-{node.job}-{self._seq + 1}")
        slot = _Slot(node, pg)
        node.slots.append(slot)
        m = self._spawn(slot)
        self._pending[pg.ready()] = (m, "pg")
        self._log(f"created placement group {pg.id.hex()} on node {node.short}")

    def _spawn(self, slot: _Slot) -> _Member:
        """Start one actor in ``slot``'s placement group."""
        self._seq += 1
        options = {
            **self._options,
            "num_gpus": self.gpus_per_actor,
            "num_cpus": self.cpus_per_actor,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(slot.pg, placement_group_bundle_index=0),
        }
        handle = self._remote_cls.options(**options).remote(*self._args, **self._kwargs)
        m = slot.member = _Member(self._seq, slot, handle)
        self._pending[handle.__ray_call__.remote(_WHERE)] = (m, "ping")
        return m

    def _restart(self, slot: _Slot) -> None:
        slot.restart_at = None
        m = self._spawn(slot)
        node = slot.node
        self._events.emit(
            "actor_restarted",
            actor=m.actor_id,
            node_id=node.node_id,
            job=node.job,
            attempt=slot.failures,
            reason=slot.last_error,
        )
        self._log(
            f"restarting actor {m.seq} on node {node.short} (job {node.job}) in placement group "
            f"{slot.pg.id.hex()}: attempt {slot.failures} of {self.max_restarts}"
        )

    def _poll_pending(self, timeout: float = 0) -> None:
        """Note members whose placement group / first call finished (waits at most ``timeout``)."""
        refs = list(self._pending)
        if not refs:
            return
        done, _ = ray.wait(refs, num_returns=1 if timeout else len(refs), timeout=timeout)
        if timeout:  # something finished (or time ran out): collect everything finished by now
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in done:
            m, kind = self._pending.pop(ref)
            if m.removed:
                continue
            try:
                value = ray.get(ref)
            except Exception as e:  # our own probe failed: the actor cannot serve (died, class failed to import, ...)
                self._actor_died(m, e)
                continue
            now = time.time()
            if kind == "pg":
                m.slot.ready_at = m.timings["pg_ready"] = now
                continue
            m.timings.setdefault("pg_ready", now)  # the ping can win the race with pg.ready()
            m.timings["actor_ready"] = now
            m.where = value
            if value["node_id"] != m.node.node_id:  # two live nodes advertise the same job key
                self._log(f"warning: actor {m.seq} meant for node {m.node.short} runs on {value['node_id'][:8]}")
            if not self.sync_state:
                self._enter_rotation(m)

    def _enter_rotation(self, m: _Member) -> None:
        m.timings["in_rotation"] = time.time()
        m.info = ActorInfo(
            seq=m.seq,
            actor_id=m.actor_id,
            node_id=m.node.node_id,
            job=m.node.job,
            placement_group=m.slot.pg.id.hex(),
            cuda_visible_devices=m.where["cuda_visible_devices"] if self.gpus_per_actor else None,
            handle=m.handle,
            timings=m.timings,
        )
        self._events.emit(
            "actor_spawned",
            actor=m.actor_id,
            node_id=m.node.node_id,
            job=m.node.job,
            gpu_index=m.info.cuda_visible_devices,
            placement_group=m.info.placement_group,
        )
        gpu = m.info.cuda_visible_devices if self.gpus_per_actor else "none"
        self._log(f"spawned actor {m.seq} on node {m.node.short} (job {m.node.job}, GPU {gpu})")

    def _admit(self) -> None:
        """Give every ready replica outside the rotation one peer's state (or the checkpoint), then let it in."""
        waiting = sorted(
            (m for n in self._nodes.values() if not n.draining for m in n.members if m.where and not m.info),
            key=lambda m: m.seq,
        )
        if not waiting:
            return
        started = time.time()
        peers = self._rotation()
        donor: Optional[_Member] = None
        nbytes: Optional[int] = None
        checkpoint = self._checkpoint_path()
        if peers:
            near = [p for p in peers if p.node is waiting[0].node]  # no transfer between nodes
            donor = (near or peers)[0]
            source = f"actor {donor.seq}"
        elif checkpoint and os.path.exists(checkpoint):
            source = "checkpoint"
            with open(checkpoint, "rb") as f:
                state_ref = ray.put(pickle.load(f))
                nbytes = f.tell()
        else:
            donor, waiting = waiting[0], waiting[1:]
            source = f"actor {donor.seq}"
            self._log(f"no live peer and no checkpoint: actor {donor.seq} starts from its initial state")
            self._enter_rotation(donor)
        if not waiting:
            return
        if donor is not None:
            state_ref = donor.handle.get_state.remote()

        calls = {m.handle.set_state.remote(state_ref): m for m in waiting}
        self._busy = {donor} if donor else set()  # a donor whose node starts draining serves until the end
        try:
            while calls:
                done, _ = ray.wait(list(calls), num_returns=len(calls), timeout=self.poll_interval_s)
                if self._should_stop():
                    return  # the newcomers stay outside; the next refresh starts over
                died = []
                for ref in done:
                    m = calls.pop(ref)
                    if m.removed:
                        continue
                    try:
                        ray.get(ref)
                    except _ACTOR_GONE as e:
                        dead = getattr(e, "actor_id", None)
                        if dead == m.actor_id:
                            died.append((m, e))
                        else:  # the state never arrived: the donor died or its node left
                            self._log(f"state for actor {m.seq} lost on the way ({_short_error(e)}); retrying at the next step")
                            if donor and dead == donor.actor_id:
                                died.append((donor, e))
                        continue
                    if nbytes is None:
                        nbytes = _object_size(state_ref)
                    m.timings["state_synced"] = now = time.time()
                    kind = "checkpoint" if donor is None else "peer"
                    self._events.emit(
                        "state_synced", job=m.node.job, actor=m.actor_id, source=kind, bytes=nbytes, seconds=round(now - started, 4)
                    )
                    self._log(f"actor {m.seq} got its state from {source} ({nbytes} bytes in {now - started:.2f}s)")
                    self._enter_rotation(m)
                self._sync_membership()  # first: an actor whose node left is reported as node_left
                for m, e in died:
                    self._actor_died(m, e)
                for ref in [r for r, m in calls.items() if m.removed]:
                    del calls[ref]
        finally:
            self._busy = set()

    def _remove_member(self, m: _Member, reason: str, error: Optional[str] = None) -> None:
        """Kill one actor (its placement group stays); emit actor_lost if it had joined the rotation."""
        if m.removed:
            return
        m.removed = True
        if m.slot.member is m:
            m.slot.member = None
        self._busy.discard(m)
        for ref in [r for r, (mm, _) in self._pending.items() if mm is m]:
            del self._pending[ref]
        _quiet(ray.kill, m.handle)
        if m.info is not None:  # every actor_lost follows an actor_spawned; start-up failures are only logged
            fields = {"error": error} if error else {}
            self._events.emit(
                "actor_lost", actor=m.actor_id, node_id=m.node.node_id, job=m.node.job, reason=reason, **fields
            )
        what = f"actor {m.seq}" if m.info is not None else f"starting actor {m.seq}"
        self._log(f"lost {what} on node {m.node.short} (job {m.node.job}): {reason}" + (f" ({error})" if error else ""))

    def _remove_slot(self, slot: _Slot, reason: str) -> None:
        """Kill the slot's actor, if any, and free its placement group."""
        if slot.member is not None:
            self._remove_member(slot.member, reason)
        _quiet(remove_placement_group, slot.pg)
        slot.node.slots.remove(slot)

    def _actor_died(self, m: _Member, error: BaseException) -> None:
        if m.removed:  # already dropped with its node
            return
        slot, node = m.slot, m.node
        slot.failures += 1
        slot.last_error = _short_error(error)
        self._remove_member(m, "actor_died", error=slot.last_error)
        if node.draining:
            self._remove_slot(slot, "node_draining")
        elif slot.failures > self.max_restarts:
            self._exclude(node, f"actor failed {slot.failures} times in a row; last: {slot.last_error}")
        else:
            delay = self.restart_backoff_s * 2 ** (slot.failures - 1)
            slot.restart_at = time.monotonic() + delay
            self._log(f"node {node.short} (job {node.job}): restarting the actor in {delay:.2f}s")

    def _exclude(self, node: _Node, reason: str) -> None:
        node.excluded = reason
        for slot in list(node.slots):
            self._remove_slot(slot, "node_excluded")
        self._events.emit("node_excluded", node_id=node.node_id, job=node.job, reason=reason)
        self._log(f"node {node.short} (job {node.job}) left out of the pool: {reason}")
        self._log(
            f"node {node.short}: SLURM job {node.job} still holds its {_number(node.gpus)} GPUs, idle, "
            f"until it ends; cancel it to give them back"
        )

    def _drop_node(self, node: _Node) -> None:
        for slot in list(node.slots):
            self._remove_slot(slot, "node_left")
        self._events.emit("node_left", node_id=node.node_id, job=node.job)
        self._log(f"lost node {node.short} (job {node.job})")

    # ---- steps --------------------------------------------------------------

    def wait_for_actors(self, timeout_s: float, min_actors: int = 1) -> bool:
        """Refresh until at least ``min_actors`` are in the rotation (True).

        False once ``timeout_s`` passed or ``should_stop()`` is true.
        """
        deadline = time.monotonic() + timeout_s
        self.refresh()
        while self.size < min_actors:
            left = deadline - time.monotonic()
            if left <= 0 or self._should_stop():
                return False
            if self._pending:
                self._poll_pending(timeout=min(self.poll_interval_s, left))
            else:
                time.sleep(min(self.poll_interval_s, left))
            self.refresh()
        return True

    def run_step(self, method: str, *args: Any, wait_for_actors_s: float = 600.0, **kwargs: Any) -> List[StepResult]:
        """Call ``method(*args, **kwargs)`` on every actor in the rotation; return the survivors' results.

        Membership is refreshed every ``poll_interval_s`` while the step runs:
        actors whose node left or that died are dropped (their call is not
        waited for), new nodes get actors that join the next step, draining
        nodes' actors are retired once their call returned.  With no actor in
        the rotation it waits up to ``wait_for_actors_s`` for one, then
        returns ``[]``.  Results are in spawn order.  Returns ``[]`` as well
        once ``should_stop()`` is true, without waiting for the step's calls.
        """
        if not self.wait_for_actors(wait_for_actors_s) or self._should_stop():
            return []
        done = self._call(self._rotation(), method, args, kwargs)
        self._sync_membership()  # retire draining nodes' actors now that the step is over
        return [StepResult(m.info, value) for m, value in done]

    def run_data_parallel_step(
        self,
        method: str,
        *args: Any,
        apply_method: str = "set_weights",
        wait_for_actors_s: float = 600.0,
        **kwargs: Any,
    ) -> DataParallelStep:
        """One synchronous data-parallel step over the actors in the rotation.

        Calls ``method(*args, rank=r, world_size=n, **kwargs)`` on each of the
        ``n`` actors (``rank`` 0..n-1 in spawn order: each takes its shard of
        the data), averages their results -- numbers, numpy arrays, or dicts
        of those, e.g. gradients or updated weights -- puts the mean in the
        object store once, and calls ``apply_method(mean)`` on every actor
        that returned a result.  An actor lost mid-step is left out of the
        mean (its shard is skipped this step).  Returns the results and the
        mean; ``DataParallelStep([], None)`` as ``run_step`` returns ``[]``.
        """
        empty = DataParallelStep([], None)
        if not self.wait_for_actors(wait_for_actors_s) or self._should_stop():
            return empty
        members = self._rotation()
        ranks = {m: {"rank": rank, "world_size": len(members)} for rank, m in enumerate(members)}
        done = self._call(members, method, args, kwargs, ranks)
        if not done:
            return empty
        mean = _mean([value for _, value in done])
        mean_ref = ray.put(mean)
        self._call([m for m, _ in done if not m.removed], apply_method, (mean_ref,), {})
        self._sync_membership()
        return DataParallelStep([StepResult(m.info, value) for m, value in done], mean)

    def _call(
        self,
        members: List[_Member],
        method: str,
        args: Tuple,
        kwargs: Dict[str, Any],
        extra_kwargs: Optional[Dict[_Member, Dict[str, Any]]] = None,
    ) -> List[Tuple[_Member, Any]]:
        """Call ``method`` on ``members``; the survivors' (member, result) in spawn order; [] once stopping."""
        calls = {
            getattr(m.handle, method).remote(*args, **kwargs, **(extra_kwargs or {}).get(m, {})): m for m in members
        }
        self._busy = set(members)
        done: List[Tuple[_Member, Any]] = []
        try:
            while calls:
                ready, _ = ray.wait(list(calls), num_returns=len(calls), timeout=self.poll_interval_s)
                if self._should_stop():
                    return []
                failed = []
                for ref in ready:
                    m = calls.pop(ref)
                    self._busy.discard(m)
                    if m.removed:
                        continue
                    try:
                        done.append((m, ray.get(ref)))
                        m.slot.failures = 0
                    except _ACTOR_GONE as e:
                        failed.append((m, e))
                # Sync first: if the actor died with its node, it is reported as node_left.
                self._sync_membership()
                for m, e in failed:
                    self._actor_died(m, e)
                for ref in [r for r, m in calls.items() if m.removed]:
                    del calls[ref]  # its node left: do not wait for Ray to fail the call
        finally:
            self._busy = set()
        return sorted(done, key=lambda mv: mv[0].seq)

    # ---- checkpoints --------------------------------------------------------

    def _checkpoint_path(self) -> Optional[str]:
        return os.path.join(self.checkpoint_dir, CHECKPOINT_FILE) if self.checkpoint_dir else None

    def checkpoint(self, timeout_s: Optional[float] = None) -> Optional[str]:
        """Write one live actor's ``get_state()`` to ``<checkpoint_dir>/state.pkl``; return the path.

        Call it between steps: the state is the one the next step starts
        from.  Returns None when no actor in the rotation could answer within
        ``timeout_s`` (None: no limit), e.g. right after a node left.
        """
        path = self._checkpoint_path()
        if path is None:
            raise ValueError("this pool has no checkpoint_dir")
        started = time.time()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for m in self._rotation():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                state = ray.get(m.handle.get_state.remote(), timeout=left)
            except GetTimeoutError:
                break
            except _ACTOR_GONE:
                continue  # the next step finds out what happened to it
            os.makedirs(self.checkpoint_dir, exist_ok=True)
            # Temp file in the same directory + rename: a restoring pool reads the old file or the new one.
            fd, tmp = tempfile.mkstemp(dir=self.checkpoint_dir, prefix=".state-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                _quiet(os.unlink, tmp)
                raise
            nbytes, seconds = os.path.getsize(path), time.time() - started
            self._events.emit("checkpoint_written", path=path, bytes=nbytes, seconds=round(seconds, 4))
            self._log(f"checkpoint: {path} ({nbytes} bytes from actor {m.seq} in {seconds:.2f}s)")
            return path
        self._log(f"checkpoint: no actor answered{'' if timeout_s is None else f' within {timeout_s:g}s'}; nothing written")
        return None

    def shutdown(self) -> None:
        """Kill every actor and remove every placement group of the pool (no events)."""
        for node in self._nodes.values():
            for slot in node.slots:
                if slot.member is not None:
                    slot.member.removed = True
                    _quiet(ray.kill, slot.member.handle)
                _quiet(remove_placement_group, slot.pg)
        self._nodes.clear()
        self._pending.clear()
        self._busy = set()

    def __enter__(self) -> "ElasticPool":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def _mean(values: List[Any]) -> Any:
    """The element-wise mean of numbers, numpy arrays, or dicts of those (same keys in each)."""
    first = values[0]
    if isinstance(first, dict):
        for v in values:
            if not isinstance(v, dict) or v.keys() != first.keys():
                raise ValueError(f"cannot average dicts with different keys: {sorted(first)} and {sorted(v)}")
        return {k: _mean([v[k] for v in values]) for k in first}
    if isinstance(first, np.ndarray) or (isinstance(first, numbers.Number) and not isinstance(first, bool)):
        mean = np.mean(np.stack([np.asarray(v) for v in values]), axis=0)
        return mean if isinstance(first, np.ndarray) else float(mean)
    raise TypeError(f"cannot average {type(first).__name__}: return numbers, numpy arrays or dicts of them")


def _object_size(ref) -> int:
    """Bytes of a stored object as Ray counts them (serialized), or 0 if Ray does not say."""
    try:
        return int(ray.experimental.get_object_locations([ref])[ref]["object_size"] or 0)
    except Exception:  # an experimental API: its absence must not fail a join
        return 0


def _number(x: float):
    """An integral float as int, others rounded: ``2.0`` -> ``2``, ``0.30000000000000004`` -> ``0.3``."""
    return int(x) if float(x).is_integer() else round(x, 3)


def _count(x: float, noun: str) -> str:
    """``3 GPUs``, ``1 GPU``, ``0.5 GPU``, ``0 actors``."""
    return f"{_number(x)} {noun}" + ("" if 0 < x <= 1 + 1e-9 else "s")


def _quiet(fn, *args) -> None:
    # Killing an actor or removing a placement group on a node that is gone may
    # fail; there is nothing left to free then.
    try:
        fn(*args)
    except Exception:
        pass


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"[\w.]*(Error|Exception)\b.*:")


def _short_error(e: BaseException) -> str:
    """The error's first line; for a traceback Ray carried over (e.g. a failed ``__init__``), its last too."""
    lines = [line.strip() for line in _ANSI.sub("", str(e)).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(lines) > 1 and _EXCEPTION_LINE.match(lines[-1]):
        text += " ... " + lines[-1]
    return f"{type(e).__name__}: {text}".strip()

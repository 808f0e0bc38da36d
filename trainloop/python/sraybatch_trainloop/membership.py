"""Membership: which Ray nodes the pool uses, and the actors on them.

Each sraybatch SLURM job runs one Ray node that advertises all its GPUs and a
custom resource ``sraybatch_job_<key>`` (value 1; ``<key>`` is the SLURM job
id, e.g. ``8`` or ``7_0``).  The pool polls ``ray.nodes()`` (one cheap GCS
call), and for every new ALIVE node with such a resource creates one placement
group per GPU slot -- bundle ``{"GPU": gpus_per_actor, "sraybatch_job_<key>":
0.001}``, which pins it to that node -- and one actor in each.  Ray assigns each
bundle its own GPUs (or, for ``gpus_per_actor < 1``, its share of one GPU), so
no GPU ever holds more actors than ``1 / gpus_per_actor``.  Actors join the
rotation once their placement group is ready and they answered a first call
(replicas: once they also got their state, see ``statesync``); nodes that die
take their actors out of the rotation, mid-step included.

An actor that dies while its node stays alive is replaced in the same
placement group -- the same GPUs -- after ``restart_backoff_s``, doubling with
each failure in a row (a finished call ends a row).  A slot that fails more
than ``max_restarts`` times in a row gets its whole node left out of the pool;
its SLURM job keeps the node's GPUs until it ends.

``_Membership`` is a part of ``ElasticPool`` (a mixin): it reads the pool's
settings and keeps its ``_nodes``, ``_pending`` and ``_busy``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import ray
from ray.exceptions import NodeDiedError, ObjectLostError, RayActorError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from .messages import _count, _number, _short_error
from .state import job_key, job_resource

# RayActorError covers ActorDiedError and ActorUnavailableError.  ObjectLostError:
# a large result stored on a node that died before we fetched it.
_ACTOR_GONE = (RayActorError, NodeDiedError, ObjectLostError)


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


class _Membership:
    """Nodes, slots and actors: who joins, who leaves, who restarts (a part of ``ElasticPool``)."""

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

    def _sync_membership(self) -> None:
        """Everything ``refresh`` does but moving state: safe while a step's calls are in flight."""
        self._track_nodes(self._alive_nodes())
        self._poll_pending()
        self._tend_nodes()

    def _alive_nodes(self) -> Dict[str, Tuple[str, float, int]]:
        """The ALIVE sraybatch nodes with room for an actor: node id -> (job key, GPUs, capacity).

        A node too small for one actor is logged once and left out.
        """
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
        return alive

    def _track_nodes(self, alive: Dict[str, Tuple[str, float, int]]) -> None:
        """Drop the nodes that are no longer alive; take in the new ones."""
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

    def _tend_nodes(self) -> None:
        """Retire draining nodes' idle actors; give the other nodes their slots and restart the actors due."""
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


def _quiet(fn, *args) -> None:
    # Killing an actor or removing a placement group on a node that is gone may
    # fail; there is nothing left to free then.
    try:
        fn(*args)
    except Exception:
        pass

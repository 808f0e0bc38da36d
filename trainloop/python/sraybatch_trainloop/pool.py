"""An elastic pool of Ray actors: one actor per GPU of every sraybatch node, while nodes come and go.

Each sraybatch SLURM job runs one Ray node that advertises all its GPUs and a
custom resource ``sraybatch_job_<key>`` (value 1; ``<key>`` is the SLURM job
id, e.g. ``8`` or ``7_0``).  The pool polls ``ray.nodes()`` (one cheap GCS
call), and for every new ALIVE node with such a resource creates one placement
group per GPU slot -- bundle ``{"GPU": gpus_per_actor, "sraybatch_job_<key>":
0.001}``, which pins it to that node -- and one actor in each.  Ray assigns each
bundle distinct GPUs, so no (node, GPU) ever gets two actors.  Actors join the
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
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import ray
from ray.exceptions import NodeDiedError, ObjectLostError, RayActorError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from .events import EventLog
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
    # time.time() of node_seen, pg_created, pg_ready, actor_ready
    timings: Dict[str, float] = field(repr=False, compare=False, default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    actor: ActorInfo
    value: Any


class _Node:
    def __init__(self, node_id: str, job: str, gpus: float, slots: int):
        self.node_id = node_id
        self.job = job
        self.gpus = gpus
        self.slots = slots
        self.seen_at = time.time()
        self.draining = False
        self.failures = 0  # actor deaths since the last actor became ready here
        self.members: Dict[str, "_Member"] = {}  # actor_id -> member

    @property
    def short(self) -> str:
        return self.node_id[:8]


class _Member:
    def __init__(self, seq: int, node: _Node, pg, handle):
        self.seq = seq
        self.node = node
        self.pg = pg
        self.handle = handle
        self.actor_id = handle._actor_id.hex()
        self.info: Optional[ActorInfo] = None  # set once ready
        self.removed = False
        self.timings = {"node_seen": node.seen_at, "pg_created": time.time()}


class ElasticPool:
    """One actor per GPU slot of every ALIVE Ray node that carries a ``sraybatch_job_<key>`` resource.

    Args:
        actor_cls: a plain class (not ``@ray.remote``); the pool wraps it.
        gpus_per_actor: GPUs per actor; a node with G GPUs gets floor(G / gpus_per_actor)
            actors.  0 means one CPU actor per sraybatch node (GPUs or not).
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
        max_failures_per_node: stop re-spawning on a node after this many
            actor deaths without one actor becoming ready in between.
        should_stop: ``should_stop() -> bool``, checked every ``poll_interval_s``
            while ``run_step`` or ``wait_for_actors`` waits (keep it cheap, e.g.
            ``threading.Event.is_set``).  Once it is true they return within
            ``poll_interval_s``: ``run_step`` returns ``[]`` and abandons its
            step, whose calls run on until ``shutdown()`` kills the actors.
            None: never stop early.
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
        max_failures_per_node: int = 3,
        should_stop: Optional[Callable[[], bool]] = None,
    ):
        if isinstance(actor_cls, ray.actor.ActorClass):
            raise TypeError("ElasticPool wants the plain class, not the @ray.remote one")
        if gpus_per_actor < 0 or cpus_per_actor < 0:
            raise ValueError("gpus_per_actor and cpus_per_actor must be >= 0")
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
        self.max_failures_per_node = max_failures_per_node
        self._should_stop = should_stop or (lambda: False)

        self._nodes: Dict[str, _Node] = {}
        self._pending: Dict[Any, Tuple[_Member, str]] = {}  # ObjectRef -> (member, "pg" | "ping")
        self._busy: set = set()  # members with a step call in flight
        self._seq = 0

    # ---- membership ---------------------------------------------------------

    @property
    def actors(self) -> List[ActorInfo]:
        """The actors in the rotation (ready, not draining), in spawn order."""
        return sorted(
            (m.info for n in self._nodes.values() if not n.draining for m in n.members.values() if m.info),
            key=lambda a: a.seq,
        )

    @property
    def size(self) -> int:
        """How many actors the next step runs on."""
        return len(self.actors)

    @property
    def pending(self) -> int:
        """Actors created but not ready yet (placement group or actor start-up in progress)."""
        return sum(1 for n in self._nodes.values() for m in n.members.values() if m.info is None)

    def _slots(self, resources: Dict[str, float]) -> int:
        if self.gpus_per_actor == 0:
            return 1
        # The epsilon keeps 1.0 / 0.1-style float division from losing a slot.
        return math.floor(resources.get("GPU", 0) / self.gpus_per_actor + 1e-9)

    def refresh(self) -> None:
        """Sync with the cluster: one ``ray.nodes()`` call plus non-blocking checks of pending actors."""
        alive: Dict[str, Tuple[str, float, int]] = {}
        for n in ray.nodes():
            if not n.get("Alive"):
                continue
            res = n.get("Resources") or {}
            job = job_key(res)
            slots = self._slots(res) if job is not None else 0
            if slots > 0:
                alive[n["NodeID"]] = (job, res.get("GPU", 0), slots)

        for node_id in list(self._nodes):
            if node_id not in alive:
                self._drop_node(self._nodes.pop(node_id))

        for node_id, (job, gpus, slots) in alive.items():
            if node_id not in self._nodes:
                node = self._nodes[node_id] = _Node(node_id, job, gpus, slots)
                gpus_out = int(gpus) if float(gpus).is_integer() else gpus
                self._events.emit("node_joined", node_id=node_id, job=job, gpus=gpus_out)
                self._log(f"detected new node {node.short} (job {job}, {gpus_out} GPUs)")

        self._poll_pending()

        for node in self._nodes.values():
            if not node.draining and self._is_draining is not None and self._is_draining(node.job):
                node.draining = True
                self._events.emit("node_draining", node_id=node.node_id, job=node.job)
                self._log(f"node {node.short} (job {node.job}) is draining")
            if node.draining:
                for m in list(node.members.values()):
                    if m not in self._busy:
                        self._remove(m, "node_draining")
            else:
                while len(node.members) < node.slots and node.failures < self.max_failures_per_node:
                    self._spawn(node)

    def _spawn(self, node: _Node) -> None:
        bundle: Dict[str, float] = {job_resource(node.job): 0.001}
        if self.gpus_per_actor:
            bundle["GPU"] = self.gpus_per_actor
        if self.cpus_per_actor:
            bundle["CPU"] = self.cpus_per_actor
        self._seq += 1
        pg = placement_group([bundle], strategy="STRICT_PACK", name=f"sraybatch-{node.job}-{self._seq}")
        options = {
            **self._options,
            "num_gpus": self.gpus_per_actor,
            "num_cpus": self.cpus_per_actor,
            "scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0),
        }
        handle = self._remote_cls.options(**options).remote(*self._args, **self._kwargs)
        m = _Member(self._seq, node, pg, handle)
        node.members[m.actor_id] = m
        self._pending[pg.ready()] = (m, "pg")
        self._pending[handle.__ray_call__.remote(_WHERE)] = (m, "ping")
        self._log(f"created placement group {pg.id.hex()} on node {node.short}")

    def _poll_pending(self, timeout: float = 0) -> None:
        """Promote members whose placement group / first call finished (waits at most ``timeout``)."""
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
                m.timings["pg_ready"] = now
                continue
            m.timings.setdefault("pg_ready", now)  # the ping can win the race with pg.ready()
            m.timings["actor_ready"] = now
            m.node.failures = 0
            m.info = ActorInfo(
                seq=m.seq,
                actor_id=m.actor_id,
                node_id=m.node.node_id,
                job=m.node.job,
                placement_group=m.pg.id.hex(),
                cuda_visible_devices=value["cuda_visible_devices"] if self.gpus_per_actor else None,
                handle=m.handle,
                timings=m.timings,
            )
            if value["node_id"] != m.node.node_id:  # two live nodes advertise the same job key
                self._log(f"warning: actor {m.seq} meant for node {m.node.short} runs on {value['node_id'][:8]}")
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

    def _remove(self, m: _Member, reason: str, error: Optional[str] = None) -> None:
        """Kill one actor and free its placement group; emit actor_lost."""
        if m.removed:
            return
        m.removed = True
        m.node.members.pop(m.actor_id, None)
        self._busy.discard(m)
        for ref in [r for r, (mm, _) in self._pending.items() if mm is m]:
            del self._pending[ref]
        _quiet(ray.kill, m.handle)
        _quiet(remove_placement_group, m.pg)
        if m.info is not None:  # every actor_lost follows an actor_spawned; start-up failures are only logged
            fields = {"error": error} if error else {}
            self._events.emit(
                "actor_lost", actor=m.actor_id, node_id=m.node.node_id, job=m.node.job, reason=reason, **fields
            )
        what = f"actor {m.seq}" if m.info is not None else f"starting actor {m.seq}"
        self._log(f"lost {what} on node {m.node.short} (job {m.node.job}): {reason}" + (f" ({error})" if error else ""))

    def _actor_died(self, m: _Member, error: BaseException) -> None:
        if m.removed:  # already dropped with its node
            return
        m.node.failures += 1
        self._remove(m, "actor_died", error=_short_error(error))
        if m.node.failures == self.max_failures_per_node:
            self._log(f"node {m.node.short} (job {m.node.job}): {m.node.failures} actor failures in a row, not re-spawning")

    def _drop_node(self, node: _Node) -> None:
        for m in list(node.members.values()):
            self._remove(m, "node_left")
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
        members = [m for n in self._nodes.values() if not n.draining for m in n.members.values() if m.info]
        calls = {getattr(m.handle, method).remote(*args, **kwargs): m for m in members}
        self._busy = set(members)
        results: List[StepResult] = []
        try:
            while calls:
                done, _ = ray.wait(list(calls), num_returns=len(calls), timeout=self.poll_interval_s)
                if self._should_stop():
                    return []
                failed = []
                for ref in done:
                    m = calls.pop(ref)
                    self._busy.discard(m)
                    if m.removed:
                        continue
                    try:
                        results.append(StepResult(m.info, ray.get(ref)))
                    except _ACTOR_GONE as e:
                        failed.append((m, e))
                # Refresh first: if the actor died with its node, it is reported as node_left.
                self.refresh()
                for m, e in failed:
                    self._actor_died(m, e)
                for ref in [r for r, m in calls.items() if m.removed]:
                    del calls[ref]  # its node left: do not wait for Ray to fail the call
        finally:
            self._busy = set()
        self.refresh()  # retire draining nodes' actors now that the step is over
        return sorted(results, key=lambda r: r.actor.seq)

    def shutdown(self) -> None:
        """Kill every actor and remove every placement group of the pool (no events)."""
        for node in self._nodes.values():
            for m in node.members.values():
                m.removed = True
                _quiet(ray.kill, m.handle)
                _quiet(remove_placement_group, m.pg)
        self._nodes.clear()
        self._pending.clear()
        self._busy = set()

    def __enter__(self) -> "ElasticPool":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def _quiet(fn, *args) -> None:
    # Killing an actor or removing a placement group on a node that is gone may
    # fail; there is nothing left to free then.
    try:
        fn(*args)
    except Exception:
        pass


def _short_error(e: BaseException) -> str:
    first = str(e).strip().splitlines()
    return f"{type(e).__name__}: {first[0] if first else ''}".strip()

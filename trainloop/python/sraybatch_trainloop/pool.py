"""An elastic pool of Ray actors: one actor per GPU slot of every sraybatch node, while nodes come and go.

``ElasticPool`` is what a driver uses: it runs steps on the actors in the
rotation, checkpoints replicas and shuts the actors down.  Its parts are next
to it: ``membership`` (nodes, placement groups, actors, restarts),
``statesync`` (a joining replica's state), ``checkpoint`` (the state file)
and ``messages`` (log and error text).  The README's "Writing your own
elastic driver" shows a whole driver.
"""

from __future__ import annotations

import numbers
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import ray
from ray.exceptions import GetTimeoutError
from ray.util.placement_group import remove_placement_group

from .checkpoint import CHECKPOINT_FILE, write_checkpoint
from .events import EventLog
from .membership import _ACTOR_GONE, ActorInfo, ExcludedNode, _Member, _Membership, _Node, _quiet
from .statesync import _StateSync

__all__ = ["CHECKPOINT_FILE", "ActorInfo", "DataParallelStep", "ElasticPool", "ExcludedNode", "StepResult"]


@dataclass(frozen=True)
class StepResult:
    actor: ActorInfo
    value: Any


class DataParallelStep(NamedTuple):
    """What ``run_data_parallel_step`` returns: each actor's result, and their mean that every actor applied."""

    results: List[StepResult]
    mean: Any  # None when results is empty


class ElasticPool(_Membership, _StateSync):
    """One actor per GPU slot of every ALIVE Ray node that carries a ``sraybatch_job_<key>`` resource.

    ``run_step`` never raises because a node left or an actor died: the step
    ends on the survivors, and actors on new nodes join at the next step.
    Exceptions raised by the actor method itself (bugs) do propagate.  Use a
    pool from one thread.  Worker nodes must be able to import ``actor_cls``'s
    module (Ray adds the driver's working directory to the workers'
    ``sys.path``; classes defined in the driver script are shipped by value).
    A whole driver: ``examples/elastic_driver.py`` (independent actors) and
    ``examples/linear_regression.py`` (replicas, data-parallel steps).

    To stop early (SIGTERM from SLURM, Ctrl-C), pass ``should_stop`` and let
    the signal handler only set what it reads::

        stop = threading.Event()
        ray.init()                 # installs its own SIGTERM handler: replace it after
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
        pool = ElasticPool(Worker, should_stop=stop.is_set)

    A handler must not raise instead: the main thread spends its time inside
    Ray's ``ray.wait``, and an exception raised there by a signal handler
    comes out as ``SystemError: <cyfunction CoreWorker.wait ...> returned a
    result with an exception set`` (Ray 2.60; only ``KeyboardInterrupt``
    passes through, but it may still land in the middle of the pool's
    bookkeeping).

    Args:
        actor_cls: a plain class (not ``@ray.remote``); the pool wraps it.  With
            ``get_state()`` and ``set_state(state)`` its actors are replicas
            that newcomers copy (see ``statesync``).
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

    def refresh(self) -> None:
        """Sync with the cluster, then give waiting replicas their state and let them into the rotation.

        One ``ray.nodes()`` call and non-blocking checks of starting actors;
        it blocks only while state moves to newcomers.  Call it between steps
        only: a newcomer copies its peer's state as of now.
        """
        self._sync_membership()
        self._admit()

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
            path = write_checkpoint(self.checkpoint_dir, state)
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

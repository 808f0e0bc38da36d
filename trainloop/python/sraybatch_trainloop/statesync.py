"""State sync: every replica that joins gets the state of a live peer before its first step.

An actor class with ``get_state()`` and ``set_state(state)`` makes replicas.
Every actor that joins -- on a node that joined, or restarted after a crash --
first receives the state of a live peer, so all replicas hold the same state
when a step starts.  At the start of a step (in ``run_step``,
``run_data_parallel_step``, ``wait_for_actors`` or ``refresh``, never while a
step's calls are in flight) the pool calls ``get_state`` on one peer, on the
newcomer's own node when it can, and passes the resulting ObjectRef to every
newcomer's ``set_state``: the state goes through the object store once per
join, not once per step, and never through the driver.  Only then does the
newcomer enter the rotation.  With no live peer a newcomer restores the last
checkpoint (``checkpoint_dir``); without one, the first newcomer keeps its
initial state and the others copy it.

``_StateSync`` is a part of ``ElasticPool`` (a mixin) built on ``_Membership``.
"""

from __future__ import annotations

import os
import time
from typing import Any, List, Optional, Tuple

import ray

from .checkpoint import read_checkpoint
from .membership import _ACTOR_GONE, _Member
from .messages import _short_error


class _StateSync:
    """Moves state to waiting replicas and lets them into the rotation (a part of ``ElasticPool``)."""

    def _admit(self) -> None:
        """Give every ready replica outside the rotation one peer's state (or the checkpoint), then let it in."""
        waiting = sorted(
            (m for n in self._nodes.values() if not n.draining for m in n.members if m.where and not m.info),
            key=lambda m: m.seq,
        )
        if not waiting:
            return
        started = time.time()
        donor, waiting, state_ref, nbytes = self._state_source(waiting)
        if not waiting:
            return
        if donor is not None:
            state_ref = donor.handle.get_state.remote()
        self._deliver_state(waiting, donor, state_ref, nbytes, started)

    def _state_source(self, waiting: List[_Member]) -> Tuple[Optional[_Member], List[_Member], Any, Optional[int]]:
        """Where the waiting replicas' state comes from: (donor, the replicas still waiting, state_ref, bytes).

        A live peer, nearest first, is the donor; with none, the checkpoint is
        the state (donor None); with neither, the first waiting replica keeps
        its initial state, enters the rotation and is the others' donor.
        """
        peers = self._rotation()
        checkpoint_path = self._checkpoint_path()
        if peers:
            near = [p for p in peers if p.node is waiting[0].node]  # no transfer between nodes
            return (near or peers)[0], waiting, None, None
        if checkpoint_path and os.path.exists(checkpoint_path):
            state, nbytes = read_checkpoint(checkpoint_path)
            return None, waiting, ray.put(state), nbytes
        donor = waiting[0]
        self._log(f"no live peer and no checkpoint: actor {donor.seq} starts from its initial state")
        self._enter_rotation(donor)
        return donor, waiting[1:], None, None

    def _deliver_state(
        self, waiting: List[_Member], donor: Optional[_Member], state_ref, nbytes: Optional[int], started: float
    ) -> None:
        """Pass ``state_ref`` to every waiting replica's ``set_state``; each that took it enters the rotation."""
        source = "checkpoint" if donor is None else f"actor {donor.seq}"
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
                        died += self._state_lost(m, donor, e)
                        continue
                    if nbytes is None:
                        nbytes = _object_size(state_ref)
                    self._state_synced(m, donor, source, nbytes, started)
                self._sync_membership()  # first: an actor whose node left is reported as node_left
                for m, e in died:
                    self._actor_died(m, e)
                for ref in [r for r, m in calls.items() if m.removed]:
                    del calls[ref]
        finally:
            self._busy = set()

    def _state_lost(self, m: _Member, donor: Optional[_Member], e: BaseException) -> List[Tuple[_Member, BaseException]]:
        """Which actor died when ``m``'s ``set_state`` failed: ``m`` itself, the donor, or none (its node left)."""
        dead = getattr(e, "actor_id", None)
        if dead == m.actor_id:
            return [(m, e)]
        # The state never arrived: the donor died or its node left.
        self._log(f"state for actor {m.seq} lost on the way ({_short_error(e)}); retrying at the next step")
        if donor and dead == donor.actor_id:
            return [(donor, e)]
        return []

    def _state_synced(self, m: _Member, donor: Optional[_Member], source: str, nbytes: int, started: float) -> None:
        m.timings["state_synced"] = now = time.time()
        kind = "checkpoint" if donor is None else "peer"
        self._events.emit(
            "state_synced", job=m.node.job, actor=m.actor_id, source=kind, bytes=nbytes, seconds=round(now - started, 4)
        )
        self._log(f"actor {m.seq} got its state from {source} ({nbytes} bytes in {now - started:.2f}s)")
        self._enter_rotation(m)


def _object_size(ref) -> int:
    """Bytes of a stored object as Ray counts them (serialized), or 0 if Ray does not say."""
    try:
        return int(ray.experimental.get_object_locations([ref])[ref]["object_size"] or 0)
    except Exception:  # an experimental API: its absence must not fail a join
        return 0

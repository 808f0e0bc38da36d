"""Actors that die while their node lives: restarted in their placement group with backoff, or their node left out."""

import os
import signal
import sys
import time

import ray

from conftest import check_event_file, pid_of, settle
from sraybatch_trainloop import EventLog
from sraybatch_trainloop import ExcludedNode

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Counter:
    """A replica whose state is how many steps it took."""

    def __init__(self):
        self.n = 0

    def step(self):
        self.n += 1
        return self.n

    def get_state(self):
        return self.n

    def set_state(self, n):
        self.n = n


class Broken:
    def __init__(self):
        raise RuntimeError("cannot start")


def kill(actor):
    os.kill(pid_of(actor), signal.SIGKILL)


def by_event(records, name):
    return [r for r in records if r["event"] == name]


def test_killed_actor_restarts_in_its_slot_with_its_peers_state(nodes, make_pool, tmp_path):
    events_path = tmp_path / "events.jsonl"
    pool = make_pool(Counter, events=EventLog(events_path), restart_backoff_s=0.3)
    node, key = nodes.add(gpus=2)
    victim, peer = settle(pool, nodes)
    for _ in range(3):
        pool.run_step("step")
    kill(victim)
    results = pool.run_step("step")
    assert [(r.actor.actor_id, r.value) for r in results] == [(peer.actor_id, 4)]

    after = settle(pool, nodes)
    new = next(a for a in after if a.actor_id != peer.actor_id)
    assert (new.placement_group, new.cuda_visible_devices) == (victim.placement_group, victim.cuda_visible_devices)
    assert ray.get(new.handle.get_state.remote()) == 4  # the peer's state, before its first step
    assert [r.value for r in pool.run_step("step")] == [5, 5]
    assert pool.excluded() == []

    records = check_event_file(events_path)
    [lost] = by_event(records, "actor_lost")
    [restarted] = by_event(records, "actor_restarted")
    assert (lost["actor"], lost["reason"]) == (victim.actor_id, "actor_died")
    assert restarted["actor"] == new.actor_id and restarted["attempt"] == 1
    assert (restarted["node_id"], restarted["job"]) == (node.node_id, key)
    assert "ActorDiedError" in restarted["reason"]
    assert restarted["ts"] - lost["ts"] >= 0.3  # the backoff
    synced = [r for r in by_event(records, "state_synced") if r["actor"] == new.actor_id]
    assert [r["source"] for r in synced] == ["peer"]


def test_node_left_out_after_repeated_failures(nodes, make_pool, tmp_path):
    events_path = tmp_path / "events.jsonl"
    lines = []
    pool = make_pool(Counter, events=EventLog(events_path), log=lines.append, max_restarts=2, restart_backoff_s=0.2)
    bad, bad_key = nodes.add(gpus=2)
    good, _ = nodes.add(gpus=1)
    actors = settle(pool, nodes)
    slot = next(a for a in actors if a.node_id == bad.node_id).placement_group
    pool.run_step("step")
    for attempt in (1, 2, 3):
        # Kill the slot's actor before it finishes a step: its failures stay in a row.
        kill(next(a for a in pool.actors if a.placement_group == slot))
        results = pool.run_step("step")
        assert slot not in {r.actor.placement_group for r in results}
        if attempt <= 2:
            settle(pool, nodes)  # restarted, state received, in the rotation

    assert pool.excluded() == [ExcludedNode(bad.node_id, bad_key, 2, pool.excluded()[0].reason)]
    assert "3 times in a row" in pool.excluded()[0].reason
    assert {a.node_id for a in pool.actors} == {good.node_id}
    assert len(pool.run_step("step")) == 1
    assert bad.node_id in {n["NodeID"] for n in ray.nodes() if n["Alive"]}  # the node itself lives on
    assert any(f"SLURM job {bad_key} still holds its 2 GPUs" in line for line in lines), lines

    records = check_event_file(events_path)
    restarts = by_event(records, "actor_restarted")
    assert [r["attempt"] for r in restarts] == [1, 2]
    lost = by_event(records, "actor_lost")
    died = [r for r in lost if r["reason"] == "actor_died"]
    assert len(died) == 3
    for r, backoff in zip(restarts, (0.2, 0.4)):  # doubling
        previous = max(d["ts"] for d in died if d["ts"] < r["ts"])
        assert r["ts"] - previous >= backoff
    [excluded] = by_event(records, "node_excluded")
    assert (excluded["node_id"], excluded["job"]) == (bad.node_id, bad_key)
    # The node's healthy actor goes with it.
    assert [r["node_id"] for r in lost if r["reason"] == "node_excluded"] == [bad.node_id]


def test_actor_that_cannot_start_gets_its_node_left_out(nodes, make_pool, tmp_path):
    events_path = tmp_path / "events.jsonl"
    pool = make_pool(Broken, events=EventLog(events_path), max_restarts=1, restart_backoff_s=0.05)
    node, key = nodes.add(gpus=1)
    deadline = time.monotonic() + 60
    while not pool.excluded():
        assert time.monotonic() < deadline, "the node was never left out"
        assert not pool.wait_for_actors(0.2)
    assert [n.node_id for n in pool.excluded()] == [node.node_id]
    records = check_event_file(events_path)
    assert [r["event"] for r in records] == ["node_joined", "actor_restarted", "node_excluded"]
    assert "cannot start" in records[-1]["reason"]

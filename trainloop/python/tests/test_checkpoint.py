"""Replicas: the first actors share one state, checkpoints are written atomically and restored when no peer lives."""

import os
import pickle
import sys

import pytest
import ray

from conftest import check_event_file, settle
from sraybatch_trainloop import ElasticPool, EventLog

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Walker:
    """A replica that starts from a state of its own (its pid) and counts steps."""

    def __init__(self):
        self.state = {"start": os.getpid(), "steps": 0}

    def step(self):
        self.state["steps"] += 1
        return dict(self.state)

    def get_state(self):
        return self.state

    def set_state(self, state):
        self.state = dict(state)


class OnlyGet:
    def get_state(self):
        return 0


class Plain:
    pass


def states(pool):
    return ray.get([a.handle.get_state.remote() for a in pool.actors])


def test_first_actors_copy_one_initial_state(nodes, make_pool, tmp_path):
    events_path = tmp_path / "events.jsonl"
    pool = make_pool(Walker, events=EventLog(events_path))
    nodes.add(gpus=2)
    settle(pool, nodes)
    first, second = states(pool)
    assert first == second  # without the copy each would start from its own pid
    synced = [r for r in check_event_file(events_path) if r["event"] == "state_synced"]
    assert [(r["actor"], r["source"]) for r in synced] == [(pool.actors[1].actor_id, "peer")]


def test_checkpoint_written_atomically_and_restored(nodes, make_pool, tmp_path):
    events_path = tmp_path / "events.jsonl"
    ckpt = tmp_path / "ckpt"
    first_node, _ = nodes.add(gpus=1)
    pool = make_pool(Walker, events=EventLog(events_path), checkpoint_dir=str(ckpt))
    settle(pool, nodes)
    for _ in range(3):
        pool.run_step("step")
    saved = states(pool)[0]
    path = pool.checkpoint()
    assert path == str(ckpt / "state.pkl") and os.listdir(ckpt) == ["state.pkl"]  # no temp file left
    with open(path, "rb") as f:
        assert pickle.load(f) == saved
    pool.run_step("step")  # the live state moves on past the checkpoint
    pool.shutdown()

    # A new pool with the same checkpoint_dir resumes from it.
    resumed = make_pool(Walker, events=EventLog(events_path), checkpoint_dir=str(ckpt))
    settle(resumed, nodes)
    assert states(resumed) == [saved]
    assert resumed.run_step("step")[0].value["steps"] == 4

    # No live peer: a node that joins after the last one left restores the checkpoint too.
    nodes.remove(first_node)
    nodes.add(gpus=1)
    settle(resumed, nodes)
    assert states(resumed) == [saved]

    records = check_event_file(events_path)
    [written] = [r for r in records if r["event"] == "checkpoint_written"]
    assert written["path"] == path and written["bytes"] == os.path.getsize(path) and written["seconds"] >= 0
    synced = [r for r in records if r["event"] == "state_synced"]
    assert [r["source"] for r in synced] == ["checkpoint", "checkpoint"]
    assert all(r["bytes"] == os.path.getsize(path) for r in synced)


def test_checkpoint_with_no_actor_returns_none(make_pool, tmp_path):
    pool = make_pool(Walker, checkpoint_dir=str(tmp_path))
    assert pool.checkpoint(timeout_s=1) is None
    assert os.listdir(tmp_path) == []


def test_state_methods_validated():
    with pytest.raises(TypeError):
        ElasticPool(OnlyGet)
    with pytest.raises(ValueError):
        ElasticPool(Plain, checkpoint_dir="/tmp/x")  # nothing to checkpoint
    with pytest.raises(ValueError):
        ElasticPool(Walker, sync_state=False, checkpoint_dir="/tmp/x")
    assert ElasticPool(Walker).sync_state and not ElasticPool(Walker, sync_state=False).sync_state
    with pytest.raises(ValueError):
        ElasticPool(Plain).checkpoint()


def test_step_file_round_trip(tmp_path):
    from sraybatch_trainloop.checkpoint import read_step, write_step

    assert read_step(str(tmp_path)) == 0  # no checkpoint yet: from the start
    write_step(str(tmp_path), 41)
    write_step(str(tmp_path), 42)
    assert read_step(str(tmp_path)) == 42
    assert [p.name for p in tmp_path.iterdir()] == ["step.json"]  # no temp file left

"""ElasticPool against a real multi-raylet Ray cluster on this machine (no Ray mocks)."""

import collections
import contextlib
import os
import sys
import threading
import time

import pytest
import ray

from conftest import check_event_file, gcs_start_times, settle
from sraybatch_trainloop import ElasticPool, EventLog

# Ship this module's classes to the workers by value: they need not import the tests.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Probe:
    def __init__(self):
        self.calls = 0

    def step(self, seconds=0.0, crash_pid=None):
        if os.getpid() == crash_pid:
            os._exit(1)
        time.sleep(seconds)
        self.calls += 1
        return {"pid": os.getpid(), "calls": self.calls}

    def where(self):
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "pid": os.getpid(),
        }


class Runner(threading.Thread):
    """Runs pool.run_step in a loop (like a training driver) so the test can change the cluster meanwhile."""

    def __init__(self, pool, *args):
        super().__init__(daemon=True)
        self.pool, self.args = pool, args
        self.errors, self.steps, self.shortened = [], [], 0
        self._halt, self._want_pause = threading.Event(), threading.Event()
        self._paused, self._resume = threading.Event(), threading.Event()
        self.in_step = threading.Event()

    def run(self):
        while not self._halt.is_set():
            if self._want_pause.is_set():
                self._paused.set()
                self._resume.wait()
                self._resume.clear()
                self._paused.clear()
                continue
            try:
                self.pool.refresh()
                before = self.pool.size
                self.in_step.set()
                results = self.pool.run_step("step", *self.args, wait_for_actors_s=0.3)
                self.in_step.clear()
            except BaseException as e:  # the loop must never raise
                self.errors.append(e)
                return
            self.steps.append(results)
            self.shortened += 0 < len(results) < before  # an actor was lost mid-step

    @contextlib.contextmanager
    def paused(self):
        self._want_pause.set()
        assert self._paused.wait(60), "runner did not pause"
        try:
            yield
        finally:
            self._want_pause.clear()
            self._resume.set()

    def stop(self):
        self._halt.set()
        self._want_pause.clear()
        self._resume.set()
        self.join(60)


def test_join_leave_cycles(nodes, make_pool, tmp_path):
    events_path = tmp_path / "events.jsonl"
    pool = make_pool(Probe, events=EventLog(events_path))
    runner = Runner(pool, 0.4)  # slow steps: joins and leaves land while a step is in flight
    runner.start()
    added_at, removed = {}, []
    try:
        for i in range(20):
            node, key = nodes.add(gpus=2)
            added_at[node.node_id] = time.time()
            if len(nodes.alive) > 2:
                victim = next(iter(nodes.alive.values()))[0]  # the oldest
                removed.append(victim.node_id)
                if i % 3 == 0:  # graceful (SLURM job ends), in the middle of a step
                    assert runner.in_step.wait(30)
                    nodes.remove(victim)
                elif i % 3 == 1:  # graceful, between steps
                    with runner.paused():
                        nodes.remove(victim)
                else:  # SIGKILL (node crash) in the middle of a step
                    assert runner.in_step.wait(30)
                    nodes.remove(victim, graceful=False)
            with runner.paused():
                settle(pool, nodes)
            assert not runner.errors, runner.errors
    finally:
        runner.stop()
    assert not runner.errors, runner.errors
    for results in runner.steps:
        ids = [r.actor.actor_id for r in results]
        assert len(ids) == len(set(ids))
    print(f"{len(runner.steps)} steps, {runner.shortened} finished on survivors after a mid-step loss")
    assert runner.shortened > 0

    records = check_event_file(events_path)
    by = collections.defaultdict(list)
    for r in records:
        by[r["event"]].append(r)
    joined = {r["node_id"]: r for r in by["node_joined"]}
    assert set(joined) == set(added_at) and len(by["node_joined"]) == 20
    assert sorted(r["node_id"] for r in by["node_left"]) == sorted(removed)
    live = collections.Counter(r["node_id"] for r in by["actor_spawned"])
    live.subtract(r["node_id"] for r in by["actor_lost"])
    assert +live == collections.Counter({nid: 2 for nid in nodes.alive})
    # A join is seen within a second of the raylet's start even though steps are in flight.
    started = gcs_start_times()
    lags = sorted(joined[nid]["ts"] - started[nid] for nid in added_at)
    print(f"node_joined after raylet start: median {lags[len(lags) // 2]:.3f}s max {lags[-1]:.3f}s")
    assert lags[-1] < 1.5, lags


def test_actor_crash_is_replaced(nodes, make_pool, tmp_path):
    events_path = tmp_path / "events.jsonl"
    pool = make_pool(Probe, events=EventLog(events_path))
    nodes.add(gpus=2)
    actors = settle(pool, nodes)
    victim_pid = ray.get(actors[0].handle.where.remote())["pid"]
    results = pool.run_step("step", 0.0, victim_pid)
    assert [r.actor.actor_id for r in results] == [actors[1].actor_id]
    after = settle(pool, nodes)  # a new actor took the freed GPU: the same placement group
    assert actors[0].actor_id not in {a.actor_id for a in after}
    new = after[-1]
    assert (new.placement_group, new.cuda_visible_devices) == (actors[0].placement_group, actors[0].cuda_visible_devices)
    records = check_event_file(events_path)
    lost = [r for r in records if r["event"] == "actor_lost"]
    assert [(r["actor"], r["reason"]) for r in lost] == [(actors[0].actor_id, "actor_died")]
    restarted = [r for r in records if r["event"] == "actor_restarted"]
    assert [(r["actor"], r["attempt"]) for r in restarted] == [(new.actor_id, 1)]
    assert "state_synced" not in {r["event"] for r in records}  # Probe has no get_state: independent actors


def test_draining_node_gets_no_new_steps(nodes, make_pool, tmp_path):
    events_path = tmp_path / "events.jsonl"
    draining = set()
    pool = make_pool(Probe, events=EventLog(events_path), is_draining=lambda job: job in draining)
    keep, _ = nodes.add(gpus=2)
    drain, drain_key = nodes.add(gpus=1)
    settle(pool, nodes)
    assert pool.size == 3
    draining.add(drain_key)
    results = pool.run_step("step", 0.0)
    assert {r.actor.node_id for r in results} == {keep.node_id}
    assert pool.size == 2 and all(a.node_id == keep.node_id for a in pool.actors)
    nodes.remove(drain)
    pool.run_step("step", 0.0)
    records = check_event_file(events_path)
    mine = [r["event"] for r in records if r.get("node_id") == drain.node_id]
    assert mine == ["node_joined", "actor_spawned", "node_draining", "actor_lost", "node_left"]
    assert [r["reason"] for r in records if r["event"] == "actor_lost"] == ["node_draining"]


def test_cpu_only(nodes, make_pool):
    pool = make_pool(Probe, gpus_per_actor=0)
    nodes.add(gpus=0)
    nodes.add(gpus=2)  # gpus_per_actor=0: still one actor per sraybatch node
    plain = nodes.cluster.add_node(num_cpus=1, object_store_memory=80 * 1024 * 1024)  # not an sraybatch node
    try:
        actors = settle(pool, nodes, gpus_per_actor=0)
        assert len(actors) == 2 and plain.node_id not in {a.node_id for a in actors}
        assert all(a.cuda_visible_devices is None for a in actors)
        assert len(pool.run_step("step", 0.0)) == 2
    finally:
        nodes.cluster.remove_node(plain)


def test_gpus_per_actor_two(nodes, make_pool):
    lines = []
    pool = make_pool(Probe, gpus_per_actor=2, log=lines.append)
    big, big_key = nodes.add(gpus=5)  # two 2-GPU actors, one GPU left over
    small, small_key = nodes.add(gpus=1)  # too small for one actor
    actors = settle(pool, nodes, gpus_per_actor=2)
    used = [g for a in actors for g in a.cuda_visible_devices.split(",")]
    assert len(actors) == 2 and len(used) == 4 == len(set(used))
    assert {a.node_id for a in actors} == {big.node_id}
    assert f"node {big.node_id[:8]} (job {big_key}): 5 GPUs, 2 per actor: 2 actors, 1 GPU idle" in lines, lines
    assert f"node {small.node_id[:8]} (job {small_key}): 1 GPU, 2 per actor: 0 actors, 1 GPU idle" in lines, lines
    pool.refresh()
    assert sum(line.startswith(f"node {small.node_id[:8]}") for line in lines) == 1  # said once, not every poll


def test_fractional_gpus(nodes, make_pool):
    lines = []
    # 0.4 GPU: two actors per GPU (a third would need 0.4 of a GPU that has 0.2 left), 0.2 of each idle.
    pool = make_pool(Probe, gpus_per_actor=0.4, log=lines.append)
    node, key = nodes.add(gpus=2)
    actors = settle(pool, nodes, gpus_per_actor=0.4)
    assert sorted(a.cuda_visible_devices for a in actors) == ["0", "0", "1", "1"]
    assert f"node {node.node_id[:8]} (job {key}): 2 GPUs, 0.4 per actor: 4 actors, 0.4 GPU idle" in lines, lines
    assert len(pool.run_step("step", 0.0)) == 4


def test_capacity_per_node():
    def capacity(gpus_per_actor, gpus):
        return ElasticPool(Probe, gpus_per_actor=gpus_per_actor)._capacity({"GPU": gpus})

    assert [capacity(0.5, g) for g in (0, 1, 3)] == [0, 2, 6]
    assert [capacity(0.3, g) for g in (1, 2)] == [3, 6]
    assert [capacity(0.1, 1), capacity(1, 3), capacity(2, 3), capacity(2, 4), capacity(3, 8)] == [10, 3, 1, 2, 2]
    assert capacity(0, 0) == capacity(0, 8) == 1
    with pytest.raises(ValueError):
        ElasticPool(Probe, gpus_per_actor=1.5)  # Ray gives a fraction of one GPU only


def test_no_nodes_returns_empty(make_pool):
    pool = make_pool(Probe)
    t = time.monotonic()
    assert pool.run_step("step", wait_for_actors_s=0.5) == []
    assert 0.4 < time.monotonic() - t < 5


def test_rejects_remote_class():
    with pytest.raises(TypeError):
        ElasticPool(ray.remote(Probe))


def test_should_stop_interrupts_waiting_and_steps(nodes, make_pool):
    stop = threading.Event()
    pool = make_pool(Probe, should_stop=stop.is_set)
    threading.Timer(0.5, stop.set).start()
    t = time.monotonic()
    assert pool.run_step("step", wait_for_actors_s=60) == []  # no node yet: waiting for actors
    assert time.monotonic() - t < 3
    stop.clear()
    nodes.add(gpus=1)
    settle(pool, nodes)
    threading.Timer(0.5, stop.set).start()
    t = time.monotonic()
    assert pool.run_step("step", 60) == []  # abandons the step in flight
    assert time.monotonic() - t < 3

"""Synchronous data parallelism on an elastic pool: examples/linear_regression.py while nodes join and leave.

Each step is exactly one full-batch gradient step (the replicas' shard results
are scaled so that their mean is the full-batch one, whatever the world size),
so the elastic run must follow the fixed-size run's trajectory, and a join must
not disturb it -- provided the newcomer starts from its peers' weights.  The
negative control turns state sync off and must fail that check.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import ray

from conftest import check_event_file, settle
from sraybatch_trainloop import EventLog
from sraybatch_trainloop.pool import _mean

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import linear_regression  # noqa: E402
from linear_regression import Replica  # noqa: E402

ray.cloudpickle.register_pickle_by_value(linear_regression)

STEPS = 40
# Full-batch gradient descent on a convex quadratic with lr < 2 / (largest
# eigenvalue of the Hessian) lowers the loss at every step, so in exact
# arithmetic the first step after a join has a loss below the last one before
# it.  The only slack needed is floating-point rounding, ~1e-16 relative per
# operation (the world size changes the summation order): EPS leaves a margin
# of ~1e9 over that, and is ~1e6 below the jump a newcomer with zero weights
# causes (its shard's loss at w = 0 is ~1e3 times the loss after 10 steps).
EPS = 1e-6
# The elastic and the fixed-size run compute the same iterates in exact
# arithmetic; they differ by rounding only, and gradient descent contracts
# errors, so 40 steps stay near 1e-15 relative: 1e-9 is a wide margin that
# still catches one step on a wrong shard or from wrong weights (>= 1e-3).
FINAL_RTOL = 1e-9


def full_batch_losses(steps):
    """The same training without Ray: the trajectory every run must follow."""
    r = Replica()
    losses = []
    for _ in range(steps):
        out = r.step(rank=0, world_size=1)
        losses.append(out["loss"])
        r.set_weights(out)
    return losses


def add_and_settle(pool, nodes, gpus):
    """Add a node; wait until its actors are in the rotation (state received, no step taken since)."""
    nodes.add(gpus=gpus)
    return settle(pool, nodes)


def train(pool, nodes, steps, joins=(), leaves=()):
    """Run ``steps`` data-parallel steps; at step k in ``joins`` add a node of that many GPUs first,
    at k in ``leaves`` remove the oldest node first.  Returns the losses and, per join,
    (loss before, loss after, newcomer's weights == its peers' before its first step)."""
    losses, observed = [], []
    for k in range(steps):
        peers_equal = None
        if k in leaves:
            oldest = next(iter(nodes.alive.values()))[0]
            nodes.remove(oldest)
            settle(pool, nodes)  # the pool saw it leave: the next step runs on the rest only
        if k in joins:
            old = {a.actor_id for a in pool.actors}
            actors = add_and_settle(pool, nodes, joins[k])
            weights = ray.get([a.handle.get_weights.remote() for a in actors])
            peer_w = [w for a, w in zip(actors, weights) if a.actor_id in old]
            new_w = [w for a, w in zip(actors, weights) if a.actor_id not in old]
            assert peer_w and new_w and np.abs(peer_w[0]).sum() > 0  # the peers trained: equality is not 0 == 0
            peers_equal = all(np.array_equal(w, peer_w[0]) for w in peer_w + new_w)
        step = pool.run_data_parallel_step("step", apply_method="set_weights", wait_for_actors_s=30)
        assert len(step.results) == pool.size > 0
        losses.append(step.mean["loss"])
        if peers_equal is not None:
            observed.append((losses[-2], losses[-1], peers_equal))
    return losses, observed


def test_elastic_run_matches_fixed_size_run(nodes, make_pool, tmp_path):
    lr = Replica().lr
    hessian = 2 * Replica().x.T @ Replica().x / len(Replica().y)
    assert lr < 2 / np.linalg.eigvalsh(hessian).max()  # what EPS's argument assumes

    nodes.add(gpus=2)
    fixed = make_pool(Replica)
    settle(fixed, nodes)
    fixed_losses, _ = train(fixed, nodes, STEPS)
    fixed.shutdown()

    events_path = tmp_path / "events.jsonl"
    pool = make_pool(Replica, events=EventLog(events_path))
    settle(pool, nodes)
    # world size 2 -> 3 (join) -> 1 (the first node leaves) -> 3 (join; its only peer is on another node)
    losses, joins = train(pool, nodes, STEPS, joins={10: 1, 25: 2}, leaves={20})

    drift = abs(losses[-1] / fixed_losses[-1] - 1)
    print(f"joins (loss before, after): {[(b, a) for b, a, _ in joins]}; final {losses[-1]:.6g}, "
          f"fixed-size {fixed_losses[-1]:.6g}, relative difference {drift:.2e}")
    assert len(joins) == 2
    for before, after, peers_equal in joins:
        assert peers_equal, "(a) a newcomer's weights differ from its peers' before its first step"
        assert after <= (1 + EPS) * before, f"(b) the loss rose at a join: {before} -> {after}"
    reference = full_batch_losses(STEPS)
    assert fixed_losses[-1] == pytest.approx(reference[-1], rel=FINAL_RTOL)
    assert losses[-1] == pytest.approx(fixed_losses[-1], rel=FINAL_RTOL), "(c) elastic run drifted from the fixed-size run"
    assert losses[-1] < losses[0] / 100  # it learned

    records = check_event_file(events_path)
    synced = [r for r in records if r["event"] == "state_synced"]
    assert [r["source"] for r in synced] == ["peer"] * 4  # 1 (first node's 2nd actor) + 1 + 2 newcomers
    assert all(r["bytes"] > 0 and r["seconds"] >= 0 for r in synced)
    spawned_at = {r["actor"]: i for i, r in enumerate(records) if r["event"] == "actor_spawned"}
    for r in synced:  # the state arrives before the actor joins the rotation
        assert records.index(r) < spawned_at[r["actor"]]


def test_negative_control_without_state_sync(nodes, make_pool):
    # The same run with sync_state=False: the newcomer starts from zeros.  The broadcast of the
    # mean overwrites them after its first step, so only a check before that step sees it.
    nodes.add(gpus=2)
    pool = make_pool(Replica, sync_state=False)
    settle(pool, nodes)
    _, joins = train(pool, nodes, 12, joins={10: 1})
    [(before, after, peers_equal)] = joins
    print(f"without state sync: loss before the join {before:.6g}, after {after:.6g} ({after / before:.1f}x)")
    assert not peers_equal, "(a) must fail without state sync: this check would not catch a missing sync"
    assert after > (1 + EPS) * before  # (b) fails too: the zeros' shard loss enters the mean


def test_mean_of_results():
    a, b = np.array([1.0, 2.0]), np.array([3.0, 6.0])
    got = _mean([{"g": a, "loss": 1, "nested": {"x": a}}, {"g": b, "loss": 2.0, "nested": {"x": b}}])
    assert np.array_equal(got["g"], [2.0, 4.0]) and got["loss"] == 1.5 and np.array_equal(got["nested"]["x"], [2.0, 4.0])
    assert _mean([np.float32(1), np.float32(2)]) == 1.5
    with pytest.raises(ValueError):
        _mean([{"g": a}, {"h": a}])
    with pytest.raises(TypeError):
        _mean([{"name": "x"}, {"name": "y"}])

"""Fixtures: one small real Ray cluster (ray.cluster_utils.Cluster) for the whole session.

Worker nodes stand in for sraybatch SLURM jobs: ``num_gpus`` logical GPUs plus the
``sraybatch_job_<key>`` resource.  Each test's nodes and pools are torn down after it.
"""

import collections
import itertools
import os
import sys
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from sraybatch_trainloop import read_events, validate

# Ship this module's functions to the workers by value: they need not import the tests.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

MB = 1024 * 1024
# Fast health checks so that a SIGKILLed node is declared dead in ~1-2 s, not ~16-50 s.
FAST_HEALTH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


@pytest.fixture(scope="session")
def cluster():
    c = Cluster(
        initialize_head=True,
        head_node_args=dict(
            num_cpus=1,
            num_gpus=0,
            object_store_memory=80 * MB,
            include_dashboard=False,
            _system_config=FAST_HEALTH,
        ),
    )
    ray.init(address=c.address, include_dashboard=False, log_to_driver=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def gcs_start_times():
    """node_id hex -> time.time() at which the raylet started (GCS ``start_time_ms``; private Ray API)."""
    infos = ray._private.worker.global_worker.gcs_client.get_all_node_info()
    return {nid.hex(): info.start_time_ms / 1000 for nid, info in infos.items()}


_keys = itertools.count(1)


class Nodes:
    """Adds and removes fake sraybatch nodes; removes what is left at teardown."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.alive = {}  # node_id -> (Node, job key, gpus)

    def add(self, gpus=2, job=True, cpus=1):
        n = next(_keys)
        key = f"{n}_0" if n % 2 else str(n)  # both SLURM shapes: "8" and array task "7_0"
        resources = {f"sraybatch_job_{key}": 1} if job else {}
        node = self.cluster.add_node(num_cpus=cpus, num_gpus=gpus, resources=resources, object_store_memory=80 * MB)
        self.alive[node.node_id] = (node, key, gpus)
        return node, key

    def remove(self, node, graceful=True):
        del self.alive[node.node_id]
        self.cluster.remove_node(node, allow_graceful=graceful)

    def remove_all(self):
        for node, _, _ in list(self.alive.values()):
            self.remove(node)


@pytest.fixture
def nodes(cluster):
    n = Nodes(cluster)
    try:
        yield n
    finally:
        n.remove_all()


@pytest.fixture
def make_pool(cluster):
    from sraybatch_trainloop import ElasticPool

    pools = []

    def make(*args, **kwargs):
        kwargs.setdefault("poll_interval_s", 0.1)
        pools.append(ElasticPool(*args, **kwargs))
        return pools[-1]

    try:
        yield make
    finally:
        for p in pools:
            p.shutdown()


def where(_actor_self):
    """Run on any actor with ``handle.__ray_call__``: where it runs and its pid."""
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "pid": os.getpid(),
    }


def expected_slots(nodes, gpus_per_actor=1):
    """node_id -> how many actors the pool should keep there (fractions: whole actors per GPU)."""
    out = {}
    for node_id, (_, key, gpus) in nodes.alive.items():
        if key is None:
            continue
        if gpus_per_actor == 0:
            out[node_id] = 1
        elif gpus_per_actor < 1:
            out[node_id] = int(gpus) * int(round(1 / gpus_per_actor, 6))
        else:
            out[node_id] = int(gpus // gpus_per_actor)
    return {k: v for k, v in out.items() if v}


def settle(pool, nodes, gpus_per_actor=1, timeout=45):
    """Wait until the pool has exactly one actor per alive slot, then check where each actor runs.

    No GPU holds more actors than its share allows (one, or 1 / gpus_per_actor
    for a fraction), and every actor got the GPUs it asked for.
    """
    want = expected_slots(nodes, gpus_per_actor)
    deadline = time.monotonic() + timeout
    while True:
        pool.wait_for_actors(0.2, min_actors=sum(want.values()))
        have = collections.Counter(a.node_id for a in pool.actors)
        if pool.pending == 0 and dict(have) == want:
            break
        assert time.monotonic() < deadline, f"not settled: want {want}, have {dict(have)}, pending {pool.pending}"
    actors = pool.actors
    assert len(actors) == sum(want.values()) == pool.size
    wheres = ray.get([a.handle.__ray_call__.remote(where) for a in actors], timeout=60)
    for a, w in zip(actors, wheres):
        assert w["node_id"] == a.node_id
        assert w["cuda_visible_devices"] == a.cuda_visible_devices
    if gpus_per_actor:
        share = int(round(1 / gpus_per_actor, 6)) if gpus_per_actor < 1 else 1
        per_gpu = collections.Counter((w["node_id"], g) for w in wheres for g in w["cuda_visible_devices"].split(","))
        assert max(per_gpu.values()) <= share, f"a GPU holds more actors than its share: {wheres}"
        for node_id, n in want.items():
            used = sum(c for (nid, _), c in per_gpu.items() if nid == node_id)
            assert used == n * max(1, int(gpus_per_actor)), wheres
    return actors


def pid_of(actor):
    return ray.get(actor.handle.__ray_call__.remote(where), timeout=60)["pid"]


def check_event_file(path):
    """Every line valid; every actor_lost follows its actor's actor_spawned; returns the records."""
    records = read_events(path)
    assert records, "no events written"
    for r in records:
        assert validate(r) == [], r
    spawned = set()
    for r in records:
        if r["event"] == "actor_spawned":
            assert r["actor"] not in spawned
            spawned.add(r["actor"])
        elif r["event"] == "actor_lost":
            assert r["actor"] in spawned, f"actor_lost without actor_spawned: {r}"
    return records

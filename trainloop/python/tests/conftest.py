"""Fixtures: one small real Ray cluster (ray.cluster_utils.Cluster) for the whole session.

Worker nodes stand in for sraybatch SLURM jobs: ``num_gpus`` logical GPUs plus the
``sraybatch_job_<key>`` resource.  Each test's nodes and pools are torn down after it.
"""

import itertools

import pytest
import ray
from ray.cluster_utils import Cluster

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

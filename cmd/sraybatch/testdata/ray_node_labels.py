"""Report each sraybatch node's Ray resources and labels, as Ray holds them.

Used by the worker-type end-to-end test: one JSON object per alive node with
its job key, its total resources (from the GCS) and the labels a task placed
on it reads from its raylet.
"""
import json
import os
import sys

import ray

ray.init(_node_ip_address=os.environ["E2E_DRIVER_IP"], log_to_driver=False)


@ray.remote
def labels():
    # Typed Dict[str, List[str]] in Ray 2.60; read either shape.
    got = ray.get_runtime_context().get_node_labels()
    return {k: (v[0] if isinstance(v, list) else v) for k, v in got.items()}


out = []
for node in ray.nodes():
    if not node["Alive"]:
        continue
    jobs = [r for r in node["Resources"] if r.startswith("sraybatch_job_")]
    if not jobs:
        continue
    task = labels.options(resources={jobs[0]: 0.01}, num_cpus=0)
    out.append({
        "job": jobs[0][len("sraybatch_job_"):],
        "resources": node["Resources"],
        "labels": ray.get(task.remote(), timeout=120),
    })
json.dump(out, sys.stdout)

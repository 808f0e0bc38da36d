"""Run one task on every sraybatch node of the cluster and report where it ran.

Used by the end-to-end tests: prints one JSON object per node with the node's
job key, IP, GPU count, resources, and the CUDA_VISIBLE_DEVICES and node
labels a task pinned to it saw.
"""
import json
import os
import sys

import ray

ray.init(_node_ip_address=os.environ["E2E_DRIVER_IP"], log_to_driver=False)


@ray.remote
def where():
    return {
        "ip": ray.util.get_node_ip_address(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "node_id": ray.get_runtime_context().get_node_id(),
        # Typed Dict[str, List[str]] in Ray 2.60; read either shape.
        "labels": {k: (v[0] if isinstance(v, list) else v)
                   for k, v in ray.get_runtime_context().get_node_labels().items()},
    }


out = []
for node in ray.nodes():
    if not node["Alive"]:
        continue
    jobs = [r for r in node["Resources"] if r.startswith("sraybatch_job_")]
    if not jobs:
        continue
    gpus = node["Resources"].get("GPU", 0)
    task = where.options(resources={jobs[0]: 0.01}, num_gpus=gpus, num_cpus=0)
    info = ray.get(task.remote(), timeout=120)
    info.update(job=jobs[0][len("sraybatch_job_"):], gpus=gpus, node_ip=node["NodeManagerAddress"],
                resources=node["Resources"])
    out.append(info)
json.dump(out, sys.stdout)

"""Writes the wire fixtures raygcs's Go tests read, using Ray's own protobuf
classes, so the Go decoder and encoder are checked against what Ray writes
and reads.

Run from anywhere with the Ray venv's python (Ray 2.60):

    .venv/bin/python internal/raygcs/testdata/gen_fixtures.py

For each fixture NAME it writes NAME.bin (the serialized message) and
NAME.json (what the Go side must make of it, with Go's field names):

    state_*        GetClusterResourceStateReply -> raygcs.ClusterState
    drainreply_*   DrainNodeReply               -> {"Accepted", "Rejection"}
    kvreply_*      InternalKVGetReply           -> {"Found", "Constraints", "Error"}
    drainrequest_* DrainNodeRequest  <- {"NodeID", "Reason", "Message", "DeadlineMs"}
    kvrequest_*    InternalKVGetRequest <- {"Key", "Namespace"}

The last two go the other way: Go encodes the JSON's arguments and must
produce NAME.bin byte for byte. Messages are serialized deterministically
(map keys sorted), so a rerun rewrites the same bytes.

Files named *_captured_* hold bytes captured from a live Ray 2.60 cluster
(GetClusterResourceState, DrainNode replies). They are inputs: only their
.json is (re)written, from Ray's own parse of them.

The expected values are computed here independently of the Go code: gang
details are parsed with Ray's own PlacementGroupResourceDemand.

The script also checks that the numbered constants of the Go package (field
and enum numbers, named in fields.go) are the ones in Ray's descriptors, and
writes Ray's numbers to fields.json for the Go test that compares them with
the constants; and it writes the fuzz seeds under fuzz/FuzzDecodeClusterState.
"""

import glob
import json
import os
import re
import sys

from google.protobuf import descriptor_pool
from ray.autoscaler.v2.schema import PlacementGroupResourceDemand
from ray.core.generated import autoscaler_pb2 as pb
from ray.core.generated import common_pb2
from ray.core.generated import gcs_service_pb2 as gcs

HERE = os.path.dirname(os.path.abspath(__file__))

# A constant of the Go package that numbers something of Ray's protobuf says
# what in a trailing comment: `name [Type] = N // ray.full.Name[, ray.other.Name]`
# (see fields.go).
GO_CONST = re.compile(r"^\s*(\w+)\b[^=/\n]*=\s*(\d+)\s*//\s*(ray\.[\w.]+(?:,\s*ray\.[\w.]+)*)\s*$",
                      re.MULTILINE)
SERVICES = {
    "ray.rpc.autoscaler.AutoscalerStateService": ["GetClusterResourceState", "DrainNode"],
    "ray.rpc.InternalKVGcsService": ["InternalKVGet"],
}


def ray_number(full):
    """The number Ray's descriptors give the field or enum value named full."""
    pool = descriptor_pool.Default()
    try:
        return pool.FindFieldByName(full).number
    except KeyError:
        enum, _, value = full.rpartition(".")
        return pool.FindEnumTypeByName(enum).values_by_name[value].number


def check_descriptors():
    """Checks each numbered constant of the Go package against Ray's
    descriptors, and returns Ray's numbers by full name for fields.json."""
    numbers = {}
    for path in sorted(glob.glob(os.path.join(HERE, "..", "*.go"))):
        if path.endswith("_test.go"):
            continue
        with open(path) as f:
            for m in GO_CONST.finditer(f.read()):
                const, num = m.group(1), int(m.group(2))
                for full in re.split(r",\s*", m.group(3)):
                    got = ray_number(full)
                    assert got == num, f"{full} is {got} in Ray, {os.path.basename(path)}'s {const} is {num}"
                    numbers[full] = got
    assert numbers, "no numbered constants found in the Go package"
    files = [pb.DESCRIPTOR, gcs.DESCRIPTOR]
    for full, methods in SERVICES.items():
        svc = next(f.services_by_name[full.rsplit(".", 1)[1]] for f in files
                   if full.rsplit(".", 1)[1] in f.services_by_name)
        assert svc.full_name == full, svc.full_name
        for m in methods:
            assert m in svc.methods_by_name, f"{full}/{m} missing"
    return numbers


# ---- expected values, Go field names ----

STATUS = {0: "UNKNOWN", 1: "RUNNING", 2: "DEAD", 3: "IDLE", 4: "DRAINING"}


def exp_request(r):
    anti = [{"Name": c.anti_affinity.label_name, "Value": c.anti_affinity.label_value}
            for c in r.placement_constraints if c.HasField("anti_affinity")]
    aff = [{"Name": c.affinity.label_name, "Value": c.affinity.label_value}
           for c in r.placement_constraints if c.HasField("affinity")]
    sels = [{"Constraints": [{"Key": c.label_key, "Op": c.operator,
                              "Values": list(c.label_values) or None}
                             for c in s.label_constraints] or None}
            for s in r.label_selectors]
    return {"Resources": dict(r.resources_bundle), "AntiAffinity": anti or None,
            "Affinity": aff or None, "Selectors": sels or None}


def exp_count(rc):
    return {"Request": exp_request(rc.request), "Count": rc.count}


def exp_gang(g):
    reqs = list(g.requests)
    if g.bundle_selectors and g.bundle_selectors[0].resource_requests:
        reqs = list(g.bundle_selectors[0].resource_requests)
    bundles = [exp_request(r) for r in reqs]
    try:
        d = PlacementGroupResourceDemand(bundles_by_count=[], details=g.details)
        pg_id, strategy, state = d.pg_id or "", d.strategy or "", d.state or ""
    except ValueError:  # Ray's parser gives up on a second ':'
        pg_id, strategy, state = "", "", ""
    if strategy not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
        strategy = ""
        if any(b["AntiAffinity"] for b in bundles):
            strategy = "STRICT_SPREAD"
        elif any(b["Affinity"] for b in bundles):
            strategy = "STRICT_PACK"
    return {"ID": pg_id, "Bundles": bundles or None, "Strategy": strategy,
            "State": state, "Details": g.details}


def exp_node(n):
    labels = dict(n.labels)
    labels.update(n.dynamic_labels)
    return {
        "ID": n.node_id.hex(),
        "IP": n.node_ip_address,
        "Status": STATUS.get(n.status, "UNKNOWN"),
        "IdleFor": n.idle_duration_ms * 1_000_000,  # time.Duration, ns
        "Total": dict(n.total_resources),
        "Available": dict(n.available_resources),
        "Labels": labels,
        "Activity": list(n.node_activity) or None,
    }


def exp_state(reply):
    s = reply.cluster_resource_state
    gangs = [exp_gang(g) for g in s.pending_gang_resource_requests]
    return {
        "Version": s.cluster_resource_state_version,
        "Nodes": [exp_node(n) for n in s.node_states] or None,
        "Pending": [exp_count(rc) for rc in s.pending_resource_requests] or None,
        "Gangs": [g for g in gangs if g["Bundles"]] or None,
        "Constraints": [exp_count(rc) for c in s.cluster_resource_constraints
                        for rc in c.resource_requests] or None,
    }


def exp_kvreply(reply):
    if reply.status.code == 17:
        return {"Found": False, "Constraints": None, "Error": False}
    if reply.status.code != 0:
        return {"Found": False, "Constraints": None, "Error": True}
    shapes, counts = [], []
    for bundle in json.loads(reply.value):
        if bundle in shapes:
            counts[shapes.index(bundle)] += 1
        else:
            shapes.append(bundle)
            counts.append(1)
    cons = [{"Request": {"Resources": {k: float(v) for k, v in s.items()},
                         "AntiAffinity": None, "Affinity": None}, "Count": c}
            for s, c in zip(shapes, counts)]
    return {"Found": True, "Constraints": cons or None, "Error": False}


def exp_drainreply(reply):
    return {"Accepted": reply.is_accepted, "Rejection": reply.rejection_reason_message}


# ---- synthetic messages ----

HEAD_ID = bytes.fromhex("696b5fc5c32a06b1a40ff3f81340b66d2d869067ed76e0ad96b1f652")
WORKER_ID = bytes(range(1, 29))
PG_SPREAD = "e4e67af0f3c077f36328173f6d3a01000000"
PG_PACK = "ce381d697810f38ebc140b01aecb01000000"
PG_SPACK = "0a0b0c0d0e0f101112131415161701000000"


def req(resources, anti=(), aff=(), selectors=0):
    r = pb.ResourceRequest(resources_bundle=resources)
    for name, value in anti:
        r.placement_constraints.add().anti_affinity.CopyFrom(
            pb.AntiAffinityConstraint(label_name=name, label_value=value))
    for name, value in aff:
        r.placement_constraints.add().affinity.CopyFrom(
            pb.AffinityConstraint(label_name=name, label_value=value))
    for _ in range(selectors):
        sel = r.label_selectors.add()
        sel.label_constraints.add(label_key="ray.io/accelerator-type",
                                  operator=common_pb2.LABEL_OPERATOR_IN,
                                  label_values=["H100"])
    return r


def gang(pg_id, strategy, bundles, state="PENDING", constraint=None, selector=True,
         legacy=True):
    g = pb.GangResourceRequest(details=f"{pg_id}:{strategy}|{state}" if pg_id else "")
    anti = [(f"_PG_{pg_id}", "")] if constraint == "anti" else []
    aff = [(f"_PG_{pg_id}", "")] if constraint == "aff" else []
    sel = g.bundle_selectors.add() if selector else None
    for b in bundles:
        if legacy:
            g.requests.append(req(b, anti, aff))
        if sel is not None:
            sel.resource_requests.append(req(b, anti, aff))
    return g


def tag(num, wt):
    v, out = num << 3 | wt, bytearray()
    while True:
        if v < 0x80:
            out.append(v)
            return bytes(out)
        out.append(v & 0x7F | 0x80)
        v >>= 7


def varint(v):
    out = bytearray()
    while True:
        if v < 0x80:
            out.append(v)
            return bytes(out)
        out.append(v & 0x7F | 0x80)
        v >>= 7


EXTRA = (
    tag(99, 0) + varint(300)  # varint
    + tag(100, 1) + b"\x00" * 8  # fixed64
    + tag(101, 2) + varint(3) + b"abc"  # bytes
    + tag(102, 5) + b"\x00" * 4  # fixed32
    + tag(103, 3) + tag(1, 0) + varint(7) + tag(103, 4)  # group
)


def state_nodes():
    s = pb.ClusterResourceState(cluster_resource_state_version=42,
                                last_seen_autoscaler_state_version=7,
                                cluster_session_name="session_2026-11-29_19-45-30_535434_29831")
    s.node_states.add(
        node_id=HEAD_ID, instance_id="i-head", ray_node_type_name="head",
        node_state_version=41, status=pb.RUNNING, node_ip_address="10.0.0.1",
        instance_type_name="h200",
        total_resources={"CPU": 1, "GPU": 1, "memory": 22982650880,
                         "object_store_memory": 80000000, "node:10.0.0.1": 1,
                         "node:__internal_head__": 1},
        available_resources={"CPU": 1, "memory": 22982650880, "node:10.0.0.1": 1,
                             "node:__internal_head__": 1,
                             "object_store_memory": 80000000},
        node_activity=["Busy workers on node.", "Resource: GPU currently in use."],
        labels={"ray.io/node-id": HEAD_ID.hex()},
    )
    s.node_states.add(
        node_id=WORKER_ID, status=pb.IDLE, idle_duration_ms=123456,
        node_ip_address="10.0.0.2",
        total_resources={"CPU": 8, "GPU": 4, "sraybatch_job_2181": 1, "GPU_group_0_x": 0.5},
        available_resources={"CPU": 8, "GPU": 4, "sraybatch_job_2181": 1},
        labels={"ray.io/node-id": WORKER_ID.hex(), "sraybatch/job": "2181",
                "clash": "static"},
        dynamic_labels={f"_PG_{PG_SPREAD}": "", "clash": "dynamic"},
    )
    s.node_states.add(node_id=bytes(28), status=pb.DRAINING, node_ip_address="10.0.0.3",
                      total_resources={"CPU": 2}, available_resources={})
    s.node_states.add(node_id=b"\xff" * 28, status=pb.DEAD, node_ip_address="10.0.0.4")
    s.node_states.add(node_id=b"\x01" * 28)  # UNSPECIFIED
    n = s.node_states.add(node_id=b"\x02" * 28, node_ip_address="10.0.0.6")
    n.status = 9  # a status newer than this client
    # Forward compatibility: unknown fields inside a node and the state, and
    # a known field (status) with an unexpected wire type, which protobuf
    # readers skip like an unknown field.
    s.node_states[1].MergeFromString(EXTRA)
    s.node_states[2].MergeFromString(tag(8, 2) + varint(1) + b"\x01")
    s.MergeFromString(EXTRA)
    reply = pb.GetClusterResourceStateReply(cluster_resource_state=s)
    reply.MergeFromString(EXTRA)
    return reply


def state_demand():
    s = pb.ClusterResourceState(cluster_resource_state_version=1 << 40)
    s.pending_resource_requests.add(request=req({"GPU": 2}), count=1)
    # Ray 2.60 sends an empty label selector with each pending shape.
    rc = s.pending_resource_requests.add(request=req({"GPU": 1}), count=2)
    rc.request.label_selectors.add()
    s.pending_resource_requests.add(
        request=req({"CPU": 0.5, "custom": 3}, anti=[("zone", "a")],
                    aff=[("ray.io/node-id", "abc"), ("rack", "")], selectors=1),
        count=5)
    # A task asking for a type (its node group) first, else any node
    # without an A100 or V100 label: Ray's fallback list.
    rc = s.pending_resource_requests.add(request=req({"CPU": 1}), count=1)
    rc.request.label_selectors.add().label_constraints.add(
        label_key="ray.io/node-group", operator=common_pb2.LABEL_OPERATOR_IN,
        label_values=["h100"])
    rc.request.label_selectors.add().label_constraints.add(
        label_key="gpu", operator=common_pb2.LABEL_OPERATOR_NOT_IN,
        label_values=["a100", "v100"])
    s.pending_gang_resource_requests.append(
        gang(PG_SPREAD, "STRICT_SPREAD", [{"GPU": 1}] * 2, constraint="anti"))
    s.pending_gang_resource_requests.append(
        gang(PG_PACK, "PACK", [{"GPU": 1, "CPU": 1}, {"GPU": 1}]))
    s.pending_gang_resource_requests.append(
        gang(PG_SPACK, "STRICT_PACK", [{"GPU": 8}, {"CPU": 4}], constraint="aff"))
    s.pending_gang_resource_requests.append(
        gang("1234", "SPREAD", [{"CPU": 1}], state="RESCHEDULING"))
    # Older GCS: bundles only in the legacy field, no details.
    s.pending_gang_resource_requests.append(
        gang("", "", [{"GPU": 1}] * 3, constraint="anti", selector=False))
    # Newer GCS: bundles only in the selector; a strategy this client lacks.
    s.pending_gang_resource_requests.append(
        gang("5678", "FANCY_NEW", [{"TPU": 4}], legacy=False))
    # The empty entry Ray 2.60 adds for a group that is not pending: dropped.
    s.pending_gang_resource_requests.add()
    c = s.cluster_resource_constraints.add()
    c.resource_requests.add(request=req({"GPU": 1}), count=3)
    c.resource_requests.add(request=req({"CPU": 16, "memory": 1e9}), count=1)
    return pb.GetClusterResourceStateReply(cluster_resource_state=s)


STATES = {
    "state_nodes": state_nodes,
    "state_demand": state_demand,
    "state_empty": lambda: pb.GetClusterResourceStateReply(),
    "state_version_only": lambda: pb.GetClusterResourceStateReply(
        cluster_resource_state=pb.ClusterResourceState(cluster_resource_state_version=3)),
}

DRAIN_REPLIES = {
    "drainreply_accepted": pb.DrainNodeReply(is_accepted=True),
    "drainreply_rejected": pb.DrainNodeReply(
        is_accepted=False,
        rejection_reason_message="The node to be idle terminated is no longer idle."),
    "drainreply_empty": pb.DrainNodeReply(),
}

KV_REPLIES = {
    "kvreply_found": gcs.InternalKVGetReply(
        status=gcs.GcsStatus(code=0),
        value=b'[{"GPU": 1}, {"CPU": 2, "GPU": 1}, {"GPU": 1}, {"GPU": 1.0}, {"CPU": 1}]'),
    "kvreply_cleared": gcs.InternalKVGetReply(value=b"[]"),
    "kvreply_notfound": gcs.InternalKVGetReply(
        status=gcs.GcsStatus(code=17, message="Failed to find the key")),
    "kvreply_error": gcs.InternalKVGetReply(
        status=gcs.GcsStatus(code=5, message="GCS is shutting down")),
}

DRAIN_REQUESTS = {
    "drainrequest_idle": dict(NodeID=WORKER_ID.hex(), Reason=1, Message="", DeadlineMs=0),
    "drainrequest_preempt": dict(NodeID=HEAD_ID.hex(), Reason=2,
                                 Message="SLURM job 2181 ends at 12:00 — préemption",
                                 DeadlineMs=1795981665233),
}

KV_REQUESTS = {
    "kvrequest_resource_request": dict(Key="autoscaler_resource_request", Namespace=""),
    "kvrequest_namespaced": dict(Key="k", Namespace="session"),
}


def write(name, data, expected):
    if data is not None:
        with open(os.path.join(HERE, name + ".bin"), "wb") as f:
            f.write(data)
    with open(os.path.join(HERE, name + ".json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def go_bytes_literal(data):
    return "[]byte(\"" + "".join(f"\\x{b:02x}" for b in data) + "\")"


def write_fuzz_seeds(seeds):
    d = os.path.join(HERE, "fuzz", "FuzzDecodeClusterState")
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "w") as f:
            f.write("go test fuzz v1\n" + go_bytes_literal(data) + "\n")


def main():
    numbers = check_descriptors()
    with open(os.path.join(HERE, "fields.json"), "w") as f:
        json.dump(numbers, f, indent=1, sort_keys=True)
        f.write("\n")
    seeds = {}
    for name, make in STATES.items():
        reply = make()
        data = reply.SerializeToString(deterministic=True)
        # Ray's own parse is the expectation, unknown fields and all.
        parsed = pb.GetClusterResourceStateReply.FromString(data)
        write(name, data, exp_state(parsed))
        seeds[name] = data
    for name, msg in DRAIN_REPLIES.items():
        write(name, msg.SerializeToString(deterministic=True), exp_drainreply(msg))
    for name, msg in KV_REPLIES.items():
        write(name, msg.SerializeToString(deterministic=True), exp_kvreply(msg))
    for name, args in DRAIN_REQUESTS.items():
        msg = pb.DrainNodeRequest(node_id=bytes.fromhex(args["NodeID"]),
                                  reason=args["Reason"],
                                  reason_message=args["Message"],
                                  deadline_timestamp_ms=args["DeadlineMs"])
        write(name, msg.SerializeToString(deterministic=True), args)
    for name, args in KV_REQUESTS.items():
        msg = gcs.InternalKVGetRequest(key=args["Key"].encode(),
                                       namespace=args["Namespace"].encode())
        write(name, msg.SerializeToString(deterministic=True), args)

    for path in sorted(glob.glob(os.path.join(HERE, "*_captured_*.bin"))):
        name = os.path.basename(path)[:-4]
        with open(path, "rb") as f:
            data = f.read()
        if name.startswith("state_"):
            write(name, None, exp_state(pb.GetClusterResourceStateReply.FromString(data)))
            seeds[name] = data
            seeds[name + "_truncated"] = data[: len(data) // 2]
        elif name.startswith("drainreply_"):
            write(name, None, exp_drainreply(pb.DrainNodeReply.FromString(data)))
        else:
            sys.exit(f"unknown captured fixture {name}")
    seeds["garbage"] = b"\x0a\xff\xff\xff\xff\x0f\x00"
    seeds["stray_end_group"] = tag(5, 4)
    write_fuzz_seeds(seeds)


if __name__ == "__main__":
    main()

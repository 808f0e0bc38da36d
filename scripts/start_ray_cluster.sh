#!/usr/bin/env bash
# start_ray_cluster.sh [num_workers] [up flags...]: start a Ray cluster on this
# machine, no SLURM needed: a head node on the first free GPU (GPU 0 when no
# one else uses it) and num_workers worker nodes (default 0), each on the next
# free GPU. Prints the dashboard URL and stays in the foreground; Ctrl+C (or
# SIGTERM) takes down every process it started. Grow it from another shell
# with scripts/add_ray_worker.sh.
#
# A thin wrapper over `sraybatch up --backend local --foreground`; extra
# arguments go to it (e.g. --object-store-mb 2000, --node-ip 10.0.0.5).
#
# Environment:
#   SRAYBATCH      the sraybatch binary (default: sraybatch on PATH)
#   CLUSTER        the cluster's name (default: local); an ended cluster of
#                  that name is forgotten first, so the script can be rerun
#   GPUS_PER_NODE  GPUs of each Ray node (default: 1; 0 runs CPU-only nodes)
#   RAY_SETUP      shell lines each node runs before Ray starts, e.g.
#                  'source ~/venvs/ray/bin/activate' (default: none: ray on PATH)
set -euo pipefail
sraybatch="${SRAYBATCH:-sraybatch}"
cluster="${CLUSTER:-local}"
workers="${1:-0}"
if [[ ! "$workers" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [num_workers] [sraybatch up flags...]" >&2
  exit 2
fi
shift $(( $# > 0 ? 1 : 0 ))

if "$sraybatch" status --cluster "$cluster" --output json 2>/dev/null | grep -q '"state": "ended"'; then
  "$sraybatch" down --cluster "$cluster" --forget >/dev/null 2>&1
fi
args=(up --backend local --foreground --name "$cluster" --workers "$workers" --gpus-per-node "${GPUS_PER_NODE:-1}")
if [[ -n "${RAY_SETUP:-}" ]]; then
  args+=(--setup "$RAY_SETUP")
fi
# exec: Ctrl+C must reach sraybatch, which takes the cluster down.
exec "$sraybatch" "${args[@]}" "$@"

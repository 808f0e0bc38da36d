#!/usr/bin/env bash
# add_ray_worker.sh [count] [grow flags...]: add count (default 1) worker
# nodes to the cluster scripts/start_ray_cluster.sh runs, each on the next
# free GPU of this machine; returns once every new worker has joined Ray, and
# fails with one line naming the GPUs and who holds them when none is free.
#
# A thin wrapper over `sraybatch grow --wait`; extra arguments go to it.
#
# Environment:
#   SRAYBATCH  the sraybatch binary (default: sraybatch on PATH)
#   CLUSTER    the cluster's name (default: the only live cluster)
set -euo pipefail
count="${1:-1}"
if [[ ! "$count" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [count] [sraybatch grow flags...]" >&2
  exit 2
fi
shift $(( $# > 0 ? 1 : 0 ))
args=(grow -n "$count" --wait)
if [[ -n "${CLUSTER:-}" ]]; then
  args+=(--cluster "$CLUSTER")
fi
exec "${SRAYBATCH:-sraybatch}" "${args[@]}" "$@"

#!/usr/bin/env bash
# The README's first command: FlowMesh on the embedded default (a bundled Valkey server,
# blobs on local disk; no Redis server, no S3). The doctor checks the store and the blob
# store in one line; then `flowmesh demo` runs three tenants' overlapping workflows on one
# shared fabric (a control plane and two worker processes, real models), runs the same work for
# each tenant alone, and compares the two. See `flowmesh demo --help`.
set -euo pipefail
RUN=$1
cd "$(dirname "$0")/.."
unset FLOWMESH_REDIS_URL FLOWMESH_BLOB_URL  # the embedded default, whatever the shell had set

if doctor=$($RUN flowmesh doctor 2>&1); then
    echo "flowmesh doctor (embedded default): $(tail -n 1 <<<"$doctor")"
else
    echo "$doctor"
    exit 1
fi
exec $RUN flowmesh demo

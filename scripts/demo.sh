#!/usr/bin/env bash
# The README's first command: FlowMesh on the embedded default (in-process Redis, blobs on
# local disk). Until the workers land this shows the foundation: the doctor's checks, a
# CAS round trip, and how op keys make overlapping work from two teams the same items.
set -euo pipefail
RUN=$1
cd "$(dirname "$0")/.."
unset FLOWMESH_REDIS_URL  # the embedded store, whatever the shell had set

echo "== flowmesh doctor (embedded default) =="
$RUN flowmesh doctor

echo
echo "== CAS round trip: put a file, get it back verified =="
digest=$($RUN flowmesh cas put examples/operators/embed-team-a.yaml)
echo "digest: $digest"
out=$(mktemp)
$RUN flowmesh cas get "$digest" -o "$out"
cmp "$out" examples/operators/embed-team-a.yaml && echo "bytes match"
rm -f "$out"

echo
echo "== op keys: two teams, overlapping prompt sets =="
$RUN flowmesh key examples/operators/embed-team-a.yaml
$RUN flowmesh key examples/operators/embed-team-b.yaml
$RUN python - <<'PY'
import json, subprocess
def items(path):
    out = subprocess.run(["flowmesh", "key", path, "--json"], check=True, capture_output=True)
    return {i["op_key"] for i in json.loads(out.stdout)["items"]}
a = items("examples/operators/embed-team-a.yaml")
b = items("examples/operators/embed-team-b.yaml")
print(f"team A asks for {len(a)} items, team B for {len(b)}; {len(a & b)} are the same items,")
print(f"so the fabric runs {len(a | b)} instead of {len(a) + len(b)}.")
PY

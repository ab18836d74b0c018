#!/usr/bin/env bash
# Make sure the Redis the tests use answers; start a local one if it does not.
# The tests never skip when Redis is missing: they fail, so this step comes first.
set -euo pipefail
url="${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
hostport="${url#redis://}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"

answers() { redis-cli -h "$host" -p "$port" ping 2>/dev/null | grep -q PONG; }

if ! command -v redis-cli >/dev/null || ! command -v redis-server >/dev/null; then
  echo "error: redis-server/redis-cli not found; install Redis (Debian: apt-get install redis-server)" >&2
  exit 1
fi
if answers; then
  echo "redis: $host:$port answers"
  exit 0
fi
if [[ "$host" != "127.0.0.1" && "$host" != "localhost" ]]; then
  echo "error: Redis at $host:$port does not answer, and it is not local to start" >&2
  exit 1
fi
echo "redis: $host:$port does not answer; starting a local redis-server (no persistence)"
dir="${TMPDIR:-/tmp}/flowmesh-redis-$port"
mkdir -p "$dir"
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir "$dir" --logfile "$dir/redis.log"
for _ in $(seq 1 50); do
  answers && { echo "redis: started on $host:$port"; exit 0; }
  sleep 0.1
done
echo "error: redis-server did not come up; see $dir/redis.log" >&2
exit 1

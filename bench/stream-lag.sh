#!/usr/bin/env bash
# stream-lag.sh: replication lag of a stream from a real ferry-agent to a
# real ferry-hub on loopback at a steady record rate (default 10,000
# records/s of 100 bytes), measured by ferry-stream-lag: from the moment an
# append is answered (durable at the agent) to the first poll that sees the
# hub hold it (durable there). Prints a markdown table of each run and the
# medians. See bench/README.md, "Stream replication lag".
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
readonly TARGET_P99_MS=1000

usage() {
  cat <<'EOF'
usage: bench/stream-lag.sh [options]

  --rate N          records per second (default 10000)
  --seconds N       producing time per run (default 30)
  --runs N          runs; medians are reported (default 3)
  --record-bytes N  bytes per record (default 100)
  --fsync POLICY    the stream's fsync policy: batch or an interval such as
                    20ms (default batch)
  --quick           1 run of 5 s
  --keep            keep the scratch directory (logs)
  --json FILE       also write every run and the medians
  -h, --help        this text

Target (streams issue): lag p99 <= 1 s at 10,000 records/s on loopback.
FERRY_BIN (default build/bin) holds ferry-hub, ferry-agent, ferryctl and
ferry-stream-lag; they are built there when missing.
EOF
}

rate=10000 seconds=30 runs=3 record_bytes=100 fsync=batch keep=0 json_out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) rate=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --record-bytes) record_bytes=$2; shift 2 ;;
    --fsync) fsync=$2; shift 2 ;;
    --quick) runs=1 seconds=5; shift ;;
    --keep) keep=1; shift ;;
    --json) json_out=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

bin=${FERRY_BIN:-$ROOT/build/bin}
for b in ferry-hub ferry-agent ferryctl ferry-stream-lag; do
  if [ ! -x "$bin/$b" ]; then
    cmake -S "$ROOT" -B "$(dirname "$bin")" -G Ninja >/dev/null
    cmake --build "$(dirname "$bin")" --target ferry-hub ferry-agent ferryctl ferry-stream-lag
    break
  fi
done

scratch=$(mktemp -d /var/tmp/ferry-stream-lag.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$keep" = 1 ]; then echo "kept $scratch" >&2; else rm -rf "$scratch"; fi
}
trap cleanup EXIT

wait_file() {  # wait_file FILE PID: until FILE is non-empty (the process wrote it)
  for _ in $(seq 1 300); do
    [ -s "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  exit 1
}

cd "$scratch"
export FERRY_PASSPHRASE="stream-lag benchmark passphrase"
"$bin/ferryctl" keys init --out tenant.keyset --argon2-memory 8 --argon2-ops 1 >/dev/null 2>&1
"$bin/ferryctl" keys export-agent --keyset tenant.keyset --out agent.key >/dev/null 2>&1

results=()
for run in $(seq 1 "$runs"); do
  dir=$scratch/run-$run
  mkdir -p "$dir"
  "$bin/ferry-hub" init --data-dir "$dir/hub" --tenant bench >"$dir/hub-init.txt" 2>/dev/null
  fingerprint=$(sed -n 's/^hub fingerprint (agents pin this): //p' "$dir/hub-init.txt")
  admin=$(sed -n 's/^admin token (shown once; keep it secret): //p' "$dir/hub-init.txt")
  "$bin/ferry-hub" run --data-dir "$dir/hub" --listen 127.0.0.1:0 --port-file "$dir/hub.port" \
    --log-format text 2>"$dir/hub.log" &
  hub_pid=$!
  pids+=("$hub_pid")
  wait_file "$dir/hub.port" "$hub_pid"
  port=$(cat "$dir/hub.port")
  token=$(curl -sf -X POST -H "Authorization: Bearer $admin" -d '{}' \
    "http://127.0.0.1:$port/v1/tenants/bench/enrollment-tokens" | jq -r .token)
  cat >"$dir/agent.yaml" <<EOT
agent: {name: bench-agent}
stateDir: $dir/agent-state
hubs:
  - {name: hub-1, url: "ws://127.0.0.1:$port"}
streams:
  - {name: events, fsync: "$fsync"}
keyset: {file: $scratch/agent.key}
api: {listen: "127.0.0.1:0"}
EOT
  "$bin/ferry-agent" enroll --config "$dir/agent.yaml" --hub "ws://127.0.0.1:$port" \
    --hub-key "$fingerprint" --token "$token" >"$dir/enroll.log" 2>&1
  "$bin/ferry-agent" run --config "$dir/agent.yaml" --log-format text 2>"$dir/agent.log" &
  agent_pid=$!
  pids+=("$agent_pid")
  wait_file "$dir/agent-state/api.port" "$agent_pid"
  "$bin/ferry-stream-lag" --agent-port "$(cat "$dir/agent-state/api.port")" --hub-port "$port" \
    --token "$admin" --tenant bench --agent bench-agent --rate "$rate" --seconds "$seconds" \
    --record-bytes "$record_bytes" >"$dir/result.json"
  results+=("$(cat "$dir/result.json")")
  kill "$agent_pid" "$hub_pid"
  wait "$agent_pid" "$hub_pid" 2>/dev/null || true
done

all=$(printf '%s\n' "${results[@]}" | jq -s .)
median() { jq -r "[.[].$1] | sort | .[(length - 1) / 2 | floor]" <<<"$all"; }

echo "## Stream replication lag, agent -> hub on loopback"
echo
machine_line; echo
echo "rate $rate records/s of $record_bytes B, fsync $fsync, $seconds s per run, $runs run(s);"
echo "lag = from the append's answer (durable at the agent) to the hub holding it (durable there)"
echo
echo "| run | records/s | p50 ms | p90 ms | p99 ms | max ms |"
echo "|---|---|---|---|---|---|"
jq -r 'to_entries[] | "| \(.key + 1) | \(.value.records_per_s | floor) | \(.value.lag_p50_ms * 10 | round / 10) | \(.value.lag_p90_ms * 10 | round / 10) | \(.value.lag_p99_ms * 10 | round / 10) | \(.value.lag_max_ms * 10 | round / 10) |"' <<<"$all"
p50=$(median lag_p50_ms) p99=$(median lag_p99_ms)
printf '| **median** | | %.1f | | **%.1f** | |\n' "$p50" "$p99"
echo
if awk -v p="$p99" -v t="$TARGET_P99_MS" 'BEGIN { exit !(p <= t) }'; then
  echo "target p99 <= ${TARGET_P99_MS} ms: met"
else
  echo "target p99 <= ${TARGET_P99_MS} ms: NOT met"
fi
if [ -n "$json_out" ]; then
  jq --argjson p50 "$p50" --argjson p99 "$p99" \
    '{runs: ., median_lag_p50_ms: $p50, median_lag_p99_ms: $p99, target_p99_ms: 1000}' \
    <<<"$all" >"$json_out"
fi

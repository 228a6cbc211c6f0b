#!/usr/bin/env bash
# link-throughput.sh: the replication link's throughput on loopback, between
# two processes (ferry-link-peer serve / push), beside the single-core
# ChaCha20-Poly1305 (IETF) speed measured in the same run, and the accuracy of
# the upload rate limit. See bench/README.md, "Link throughput".
#
# 1 GiB of incompressible data is snapshotted once into an agent store (timed
# separately); then, --runs times, a fresh hub (serve) receives the whole
# snapshot from a fresh, freshly enrolled agent (push) and the push's own
# report gives MB/s = sealed bytes uploaded / push seconds. Then a ~200 MiB
# snapshot is pushed --runs times with --limit 20000000 to fresh hubs.
# MB = 10^6 bytes throughout. The table shows medians and every run's value.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
readonly ROOT
readonly PASSPHRASE="link-throughput benchmark passphrase"
readonly CHACHA_BENCH='BM_RawSodiumChaCha20Poly1305Ietf/65519'
readonly TARGET_RATIO=0.60 LIMIT_TOLERANCE=0.05
readonly PORT_TIMEOUT=30

usage() {
  cat <<'EOF'
usage: bench/link-throughput.sh [options]

Replicates a snapshot of incompressible data between two processes on
loopback (ferry-link-peer serve and push) and prints one markdown table of
medians: link MB/s beside the single-core ChaCha20-Poly1305 (IETF, 65,519-byte
messages, libsodium) MB/s measured in the same run, their ratio against the
60% target, and the rate measured with an upload limit against the +-5%
target. MB = 10^6 bytes.

  --size SIZE         data replicated per run (default 1GiB; B, KiB, MiB, GiB,
                      KB, MB, GB suffixes)
  --limit-size SIZE   data pushed per rate-limited run (default 200MiB)
  --limit RATE        the upload limit in bytes/s (default 20000000 = 20 MB/s)
  --runs N            runs of each kind; medians are reported (default 3)
  --quick             smoke test: 64 MiB, 20 MiB limited, 1 run
                      (explicit --size/--limit-size/--runs still win)
  --upload-batch B    pass --upload-batch B to push (default: push's own)
  --upload-window B   pass --upload-window B to serve (default: serve's own)
  --scratch DIR       where the data, the stores and the logs go (default: a
                      new directory under /var/tmp); must be absent or empty;
                      removed at the end unless --keep. Its filesystem (tmpfs
                      or disk) is printed: both ends write to it
  --keep              keep the scratch directory (stores, logs)
  --json FILE         also write every run, the medians and the targets as JSON
  -h, --help          this text

Environment: FERRY_BIN (default build/bin, relative to the repository) must
hold ferry-link-peer, ferryctl and ferry_micro_bench; this script builds
nothing (ninja -C build ferry-link-peer ferryctl ferry_micro_bench).
Needs /usr/bin/time (GNU time), python3, and about 2x --size free on the
scratch filesystem. Exit status: 0 when everything ran (targets may still
FAIL: this is a measurement), 1 when something broke (a push failed, a hub did
not start or did not stop cleanly), 2 on usage.
EOF
}

log() { printf '[link-throughput %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- options -----------------------------------------------------------------

SIZE="" LIMIT_SIZE="" RUNS="" SCRATCH="" JSON_OUT="" UPLOAD_BATCH="" UPLOAD_WINDOW=""
LIMIT=20000000
QUICK=0 KEEP=0

parse_args() {
  while (($#)); do
    case $1 in
      --size | --limit-size | --limit | --runs | --scratch | --json | --upload-batch | --upload-window)
        (($# >= 2)) || { usage >&2; exit 2; }
        case $1 in
          --size) SIZE=$2 ;;
          --limit-size) LIMIT_SIZE=$2 ;;
          --limit) LIMIT=$2 ;;
          --runs) RUNS=$2 ;;
          --scratch) SCRATCH=$2 ;;
          --json) JSON_OUT=$2 ;;
          --upload-batch) UPLOAD_BATCH=$2 ;;
          --upload-window) UPLOAD_WINDOW=$2 ;;
        esac
        shift 2
        ;;
      --quick) QUICK=1 && shift ;;
      --keep) KEEP=1 && shift ;;
      -h | --help) usage && exit 0 ;;
      *) echo "link-throughput.sh: unknown argument '$1'" >&2 && usage >&2 && exit 2 ;;
    esac
  done
  if ((QUICK)); then
    : "${SIZE:=64MiB}" "${LIMIT_SIZE:=20MiB}" "${RUNS:=1}"
  fi
  : "${SIZE:=1GiB}" "${LIMIT_SIZE:=200MiB}" "${RUNS:=3}"
  [[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs wants a positive integer" >&2; exit 2; }
  [[ $LIMIT =~ ^[1-9][0-9]*$ ]] || { echo "--limit wants bytes per second (a positive integer)" >&2; exit 2; }
  [[ -z $UPLOAD_BATCH || $UPLOAD_BATCH =~ ^[1-9][0-9]*$ ]] || { echo "--upload-batch wants bytes" >&2; exit 2; }
  [[ -z $UPLOAD_WINDOW || $UPLOAD_WINDOW =~ ^[1-9][0-9]*$ ]] || { echo "--upload-window wants bytes" >&2; exit 2; }
  SIZE_BYTES=$(size_to_bytes "$SIZE") || { echo "bad --size '$SIZE'" >&2; exit 2; }
  LIMIT_SIZE_BYTES=$(size_to_bytes "$LIMIT_SIZE") || { echo "bad --limit-size '$LIMIT_SIZE'" >&2; exit 2; }
  ((SIZE_BYTES >= 1048576 && LIMIT_SIZE_BYTES >= 1048576)) || { echo "sizes must be at least 1 MiB" >&2; exit 2; }
}

# --- environment -------------------------------------------------------------

check_tools() {
  BIN_DIR=${FERRY_BIN:-build/bin}
  [[ $BIN_DIR == /* ]] || BIN_DIR=$ROOT/$BIN_DIR
  PEER=$BIN_DIR/ferry-link-peer
  FERRYCTL=$BIN_DIR/ferryctl
  MICRO=$BIN_DIR/ferry_micro_bench
  local missing=() f
  for f in "$PEER" "$FERRYCTL" "$MICRO"; do
    [[ -x $f ]] || missing+=("$(basename "$f")")
  done
  if ((${#missing[@]})); then
    echo "link-throughput.sh: missing in $BIN_DIR: ${missing[*]}" >&2
    echo "  this script builds nothing; build them first, e.g." >&2
    echo "  ninja -C $(dirname "$BIN_DIR") ferry-link-peer ferryctl ferry_micro_bench" >&2
    exit 1
  fi
  [[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is required (apt-get install time)"
  command -v python3 >/dev/null || die "python3 is required (it parses the JSON reports)"
}

setup_scratch() {
  if [[ -z $SCRATCH ]]; then
    SCRATCH=$(mktemp -d /var/tmp/ferry-link.XXXXXX)
  else
    mkdir -p "$SCRATCH"
    SCRATCH=$(cd "$SCRATCH" && pwd)
    [[ -z $(ls -A "$SCRATCH") ]] || { echo "--scratch $SCRATCH is not empty" >&2; exit 2; }
  fi
  # Every run uses the same binaries, even if the build tree is relinked
  # meanwhile: copies in the scratch directory.
  mkdir -p "$SCRATCH/bin"
  cp -- "$PEER" "$FERRYCTL" "$MICRO" "$SCRATCH/bin/"
  BIN_ID="ferry-link-peer sha256 $(sha256sum -- "$PEER" | cut -c1-12), built $(date -u -r "$PEER" +%FT%TZ)"
  PEER=$SCRATCH/bin/ferry-link-peer
  FERRYCTL=$SCRATCH/bin/ferryctl
  MICRO=$SCRATCH/bin/ferry_micro_bench
  DATA_DIR=$SCRATCH/data
  AGENT_DIR=$SCRATCH/agent
  RUNS_DIR=$SCRATCH/runs
  LOG_DIR=$SCRATCH/logs
  RESULTS=$SCRATCH/results.tsv
  mkdir -p "$DATA_DIR" "$AGENT_DIR" "$RUNS_DIR" "$LOG_DIR"
  : >"$RESULTS"
  local need avail
  need=$(((SIZE_BYTES + LIMIT_SIZE_BYTES) * 2 + (SIZE_BYTES + LIMIT_SIZE_BYTES) / 10))
  avail=$(df -B1 --output=avail -- "$SCRATCH" | tail -n 1 | tr -d ' ')
  if ((avail < need)); then
    die "$SCRATCH has $(human_bytes "$avail") free, needs about $(human_bytes "$need") (data + agent store + one hub store)"
  fi
}

HUB_PID=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_hub_quietly
  if ((KEEP)); then
    log "scratch directory kept: $SCRATCH"
  elif [[ -n ${SCRATCH:-} && -d $SCRATCH ]]; then
    if ((rc == 0)); then
      rm -rf -- "$SCRATCH"
    else
      # Keep the logs of a failed run, not the gigabytes.
      rm -rf -- "$SCRATCH/data" "$SCRATCH/agent/store" "$SCRATCH/agent/cache"
      find "$SCRATCH/runs" -mindepth 2 -maxdepth 3 -type d -name store -exec rm -rf -- {} + 2>/dev/null || true
      log "logs of the failed run kept in $SCRATCH (remove it when done)"
    fi
  fi
  exit "$rc"
}
on_signal() {
  log "interrupted"
  exit 130
}

# Only the hub this script started, by its pid.
stop_hub_quietly() {
  if [[ -n $HUB_PID ]] && kill -0 "$HUB_PID" 2>/dev/null; then
    kill -TERM "$HUB_PID" 2>/dev/null || true
    wait "$HUB_PID" 2>/dev/null || true
  fi
  HUB_PID=""
}

# --- measuring ---------------------------------------------------------------

# --- steps -------------------------------------------------------------------

export FERRY_PASSPHRASE=$PASSPHRASE

make_keys() {
  KEYSET=$AGENT_DIR/tenant.keyset
  AGENT_KEYS=$AGENT_DIR/agent.keys
  "$FERRYCTL" keys init --out "$KEYSET" --argon2-memory 8 --argon2-ops 1 >"$LOG_DIR/keys.log" 2>&1 ||
    die "ferryctl keys init failed: $(last_lines "$LOG_DIR/keys.log")"
  "$FERRYCTL" keys export-agent --keyset "$KEYSET" --out "$AGENT_KEYS" >>"$LOG_DIR/keys.log" 2>&1 ||
    die "ferryctl keys export-agent failed: $(last_lines "$LOG_DIR/keys.log")"
}

# make_data DIR BYTES: incompressible files of at most 256 MiB from /dev/urandom.
make_data() {
  local dir=$1 left=$2 part=0 n
  mkdir -p "$dir"
  while ((left > 0)); do
    n=$((left < 268435456 ? left : 268435456))
    head -c "$n" /dev/urandom >"$dir/part-$part.bin"
    left=$((left - n))
    part=$((part + 1))
  done
  sync
}

# snapshot NAME SRC: one snapshot into the agent store; sets SNAP_ID, SNAP_WALL, SNAP_CPU.
snapshot() {
  local name=$1 src=$2 out=$LOG_DIR/snapshot-$1
  mkdir -p "$AGENT_DIR/cache"
  /usr/bin/time -f '%e %U %S %M' -o "$out.time" -- env XDG_CACHE_HOME="$AGENT_DIR/cache" \
    "$FERRYCTL" snapshot create --store "$AGENT_DIR/store" --keyset "$AGENT_KEYS" --name "$name" \
    --label bench=link-throughput "$src" >"$out.out" 2>"$out.err" ||
    die "ferryctl snapshot create ($name) failed: $(last_lines "$out.err")"
  SNAP_ID=$(awk 'NF { last = $0 } END { print last }' "$out.out")
  [[ -n $SNAP_ID ]] || die "ferryctl snapshot create ($name) printed no snapshot id"
  local user sys
  read -r SNAP_WALL user sys _ < <(tail -n 1 "$out.time")
  SNAP_CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  sync
}

prepare_snapshots() {
  log "writing $(human_bytes "$SIZE_BYTES") from /dev/urandom"
  make_data "$DATA_DIR/link" "$SIZE_BYTES"
  log "snapshot of the link dataset (not part of the link figure)"
  snapshot link "$DATA_DIR/link"
  LINK_SNAP=$SNAP_ID LINK_SNAP_WALL=$SNAP_WALL LINK_SNAP_CPU=$SNAP_CPU
  log "  $LINK_SNAP in ${SNAP_WALL}s wall, ${SNAP_CPU}s CPU"
  log "writing $(human_bytes "$LIMIT_SIZE_BYTES") for the rate-limited runs"
  make_data "$DATA_DIR/limited" "$LIMIT_SIZE_BYTES"
  snapshot limited "$DATA_DIR/limited"
  LIMITED_SNAP=$SNAP_ID
  log "  $LIMITED_SNAP in ${SNAP_WALL}s wall, ${SNAP_CPU}s CPU"
  rm -rf -- "$DATA_DIR"
}

# start_hub DIR: a fresh hub state, one join token, serve in the background;
# sets HUB_PID, HUB_URL, HUB_KEY, TOKEN.
start_hub() {
  local dir=$1
  HUB_KEY=$("$PEER" init --state "$dir/hub" 2>"$dir/init.err") ||
    die "ferry-link-peer init failed: $(last_lines "$dir/init.err")"
  TOKEN=$("$PEER" add-token --state "$dir/hub" --tenant bench 2>"$dir/add-token.err") ||
    die "ferry-link-peer add-token failed: $(last_lines "$dir/add-token.err")"
  local window=()
  [[ -z $UPLOAD_WINDOW ]] || window=(--upload-window "$UPLOAD_WINDOW")
  "$PEER" serve --state "$dir/hub" --port-file "$dir/port" "${window[@]}" \
    >"$dir/serve.out" 2>"$dir/serve.err" &
  HUB_PID=$!
  local waited=0
  while [[ ! -s $dir/port ]]; do
    kill -0 "$HUB_PID" 2>/dev/null || {
      wait "$HUB_PID" 2>/dev/null || true
      HUB_PID=""
      die "the hub exited before writing its port: $(last_lines "$dir/serve.err")"
    }
    ((waited < PORT_TIMEOUT * 10)) || die "the hub wrote no port file within ${PORT_TIMEOUT}s"
    sleep 0.1
    waited=$((waited + 1))
  done
  HUB_URL="ws://127.0.0.1:$(tr -d '[:space:]' <"$dir/port")"
}

# stop_hub DIR: SIGTERM; the hub must exit 0.
stop_hub() {
  local dir=$1 rc=0
  kill -TERM "$HUB_PID" || die "could not signal the hub ($HUB_PID)"
  wait "$HUB_PID" || rc=$?
  HUB_PID=""
  ((rc == 0)) || die "the hub exited with status $rc after SIGTERM: $(last_lines "$dir/serve.err")"
}

# push_run KIND RUN SNAPSHOT [LIMIT]: fresh hub, enroll, push, record.
push_run() {
  local kind=$1 run=$2 snap=$3 limit=${4:-0}
  local dir=$RUNS_DIR/$kind-$run
  mkdir -p "$dir"
  start_hub "$dir"
  "$PEER" enroll --key "$dir/agent.key" --hub "$HUB_URL" --hub-key "$HUB_KEY" --token "$TOKEN" \
    --name bench-agent --keyset "$AGENT_KEYS" >"$dir/enroll.out" 2>"$dir/enroll.err" ||
    die "enroll failed: $(last_lines "$dir/enroll.err")"
  local args=(--key "$dir/agent.key" --hub "$HUB_URL" --hub-key "$HUB_KEY"
    --store "$AGENT_DIR/store" --snapshot "$snap")
  ((limit == 0)) || args+=(--limit "$limit")
  [[ -z $UPLOAD_BATCH ]] || args+=(--upload-batch "$UPLOAD_BATCH")
  sync
  local hub_user0 hub_sys0 hub_user1 hub_sys1 busy0 idle0 busy1 idle1 stall0 stall1 rc=0
  read -r hub_user0 hub_sys0 < <(proc_cpu_s "$HUB_PID") || die "cannot read /proc/$HUB_PID/stat"
  read -r busy0 idle0 < <(cpu_jiffies)
  stall0=$(cpu_stall_us)
  /usr/bin/time -f '%e %U %S %M' -o "$dir/push.time" -- "$PEER" push "${args[@]}" \
    >"$dir/push.json" 2>"$dir/push.err" || rc=$?
  stall1=$(cpu_stall_us)
  read -r busy1 idle1 < <(cpu_jiffies)
  if ! kill -0 "$HUB_PID" 2>/dev/null; then
    local hub_rc=0
    wait "$HUB_PID" || hub_rc=$?
    HUB_PID=""
    local why="it exited with status $hub_rc"
    if grep -q 'signal [0-9]*: stopping' "$dir/serve.err"; then
      why="it was sent $(grep -o 'signal [0-9]*' "$dir/serve.err" | head -n 1) by something other than this script"
    fi
    die "the hub stopped during the push ($kind run $run): $why; push status $rc:" \
      "$(last_lines "$dir/push.err" 1) (logs: $dir)"
  fi
  read -r hub_user1 hub_sys1 < <(proc_cpu_s "$HUB_PID") || die "cannot read /proc/$HUB_PID/stat"
  local hub_rss
  hub_rss=$(proc_peak_rss_kib "$HUB_PID")
  ((rc == 0)) || die "push ($kind run $run) failed with status $rc: $(last_lines "$dir/push.err")"
  stop_hub "$dir"
  local wall user sys rss
  read -r wall user sys rss < <(tail -n 1 "$dir/push.time")
  python3 - "$dir/push.json" >>"$RESULTS" <<PY || die "push ($kind run $run) printed no usable report: $(last_lines "$dir/push.json")"
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
if not r.get("ok"):
    sys.exit("push report says not ok: " + r.get("error", ""))
nproc = $(nproc)
wall = $wall
busy = ($busy1 - $busy0); total = busy + ($idle1 - $idle0)
row = {
    "kind": "$kind", "run": $run, "wall_s": wall,
    "push_cpu_s": round($user + $sys, 2), "push_user_s": $user, "push_sys_s": $sys,
    "push_peak_rss_kib": $rss,
    "hub_cpu_s": round($hub_user1 + $hub_sys1 - $hub_user0 - $hub_sys0, 2),
    "hub_user_s": round($hub_user1 - $hub_user0, 2), "hub_sys_s": round($hub_sys1 - $hub_sys0, 2),
    "hub_peak_rss_kib": int("${hub_rss:-0}" or 0),
    "busy_cores": round(nproc * busy / total, 2) if total > 0 else None,
    "cpu_stall_pct": round(min(100.0, ($stall1 - $stall0) / 1e4 / wall), 1) if wall > 0 else None,
    "limit": $limit, "report": r,
}
print(json.dumps(row))
PY
  python3 - "$RESULTS" <<'PY' >&2
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
p = r["report"]
print("[link-throughput]   %s run %d: %.1f MB/s (%d chunks, %.1f MB sealed in %.2f s; wire %.1f MB/s); "
      "CPU (user+sys) push %.2f+%.2f s, hub %.2f+%.2f s; %.2f cores busy" % (
      r["kind"], r["run"], p["bytes_sent"] / p["seconds"] / 1e6, p["chunks_sent"], p["bytes_sent"] / 1e6,
      p["seconds"], p["wire_bytes_sent"] / p["seconds"] / 1e6, r["push_user_s"], r["push_sys_s"],
      r["hub_user_s"], r["hub_sys_s"],
      r["busy_cores"] or 0))
PY
  ((KEEP)) || rm -rf -- "$dir/hub/store"
}

# The single-core reference: libsodium's IETF ChaCha20-Poly1305 on one
# transport message (65,519 bytes of plaintext), 5 repetitions.
chacha_bench() {
  local tag=$1 out=$LOG_DIR/chacha-$1.json
  "$MICRO" --benchmark_filter="^${CHACHA_BENCH}\$" --benchmark_repetitions=5 \
    --benchmark_format=json >"$out" 2>"$LOG_DIR/chacha-$tag.err" ||
    die "ferry_micro_bench failed: $(last_lines "$LOG_DIR/chacha-$tag.err")"
  python3 - "$out" <<'PY' || die "ferry_micro_bench ran no $CHACHA_BENCH (rebuild ferry_micro_bench?)"
import json, sys
d = json.load(open(sys.argv[1]))
reps = [b for b in d["benchmarks"] if b.get("run_type") == "iteration"]
if not reps:
    sys.exit(1)
PY
}

# --- report ------------------------------------------------------------------

report() {
  python3 - "$RESULTS" "$LOG_DIR" <<PY
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
log_dir = sys.argv[2]
json_out = """$JSON_OUT"""
limit = $LIMIT
target_ratio = $TARGET_RATIO
tolerance = $LIMIT_TOLERANCE

def chacha(tag):
    d = json.load(open(f"{log_dir}/chacha-{tag}.json"))
    return [b["bytes_per_second"] for b in d["benchmarks"] if b.get("run_type") == "iteration"]

chacha_before, chacha_after = chacha("before"), chacha("after")
chacha_all = chacha_before + chacha_after
chacha_med = statistics.median(chacha_all)

def mbps(r, key="bytes_sent"):
    return r["report"][key] / r["report"]["seconds"] / 1e6

link = [r for r in rows if r["kind"] == "link"]
lim = [r for r in rows if r["kind"] == "limited"]
link_mb = [mbps(r) for r in link]
link_wire = [mbps(r, "wire_bytes_sent") for r in link]
lim_mb = [mbps(r) for r in lim]
med = statistics.median
link_med = med(link_mb)
ratio = link_med * 1e6 / chacha_med
lim_med = med(lim_mb)
dev = (lim_med * 1e6 - limit) / limit
ok_ratio = ratio >= target_ratio
ok_limit = abs(dev) <= tolerance

def runs(vals, f="%.1f"):
    return ", ".join(f % v for v in vals)

def mid(key, rs):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return med(vals) if vals else float("nan")

print("## Link throughput on loopback: medians of %d run(s)\n" % len(link))
print("- date: $(date -u +%FT%TZ)")
print("- machine: $(machine_line)")
print("- binaries: $BIN_DIR ($BIN_ID), copied to the scratch dir at the start")
print("- scratch (data, agent store, hub stores): $(fs_line "$SCRATCH")")
print("- load average: %s at start, %s at end; warm page cache (the agent store was just written)"
      % ("$LOAD_START", "$(cut -d' ' -f1-3 /proc/loadavg)"))
print("- link data: $(human_bytes "$SIZE_BYTES") from /dev/urandom, one snapshot $LINK_SNAP "
      "(%d chunks, %.1f MB sealed); snapshot took ${LINK_SNAP_WALL} s wall, ${LINK_SNAP_CPU} s CPU (not in the figures)"
      % (link[0]["report"]["chunks_sent"], link[0]["report"]["bytes_sent"] / 1e6))
print("- rate-limited data: $(human_bytes "$LIMIT_SIZE_BYTES"), snapshot $LIMITED_SNAP, push --limit %d" % limit)
print("- MB = 10^6 bytes. link MB/s = sealed bytes uploaded / push seconds (push's report: connect excluded,")
print("  query + upload + commit included); wire = bytes written to the socket / the same seconds")
print()
print("| measurement | median | runs | target | result |")
print("|---|---:|---|---|---|")
print("| link, sealed MB/s | %.1f | %s | | |" % (link_med, runs(link_mb)))
print("| link, wire MB/s | %.1f | %s | | |" % (med(link_wire), runs(link_wire)))
print("| ChaCha20-Poly1305 IETF, 1 core, 65,519 B, MB/s | %.1f | %s | | |"
      % (chacha_med / 1e6, runs([v / 1e6 for v in chacha_all], "%.0f")))
print("| link / ChaCha20-Poly1305 | %.1f%% | %s | >= %.0f%% | %s |"
      % (100 * ratio, runs([100 * v * 1e6 / chacha_med for v in link_mb], "%.1f%%"), 100 * target_ratio,
         "PASS" if ok_ratio else "FAIL"))
print("| limited to %.1f MB/s, measured MB/s | %.2f | %s | %.1f +- %.0f%% | %s (%+.1f%%) |"
      % (limit / 1e6, lim_med, runs(lim_mb, "%.2f"), limit / 1e6, 100 * tolerance,
         "PASS" if ok_limit else "FAIL", 100 * dev))
print()
print("Per link run (medians): push wall %.2f s; CPU user+sys: push %.2f+%.2f s, hub %.2f+%.2f s "
      "(push: the whole process under GNU time; hub: during the push, from /proc); "
      "%.2f of %d cores busy machine-wide, a task waited for a CPU %.0f%% of the time (PSI), "
      "peak RSS push %.0f MiB, hub %.0f MiB."
      % (mid("wall_s", link), mid("push_user_s", link), mid("push_sys_s", link), mid("hub_user_s", link),
         mid("hub_sys_s", link), mid("busy_cores", link),
         $(nproc), mid("cpu_stall_pct", link), mid("push_peak_rss_kib", link) / 1024,
         mid("hub_peak_rss_kib", link) / 1024))
print("ChaCha20-Poly1305 reference: 5 repetitions before the link runs (median %.0f MB/s) and 5 after (%.0f MB/s); the median of all 10 is used."
      % (med(chacha_before) / 1e6, med(chacha_after) / 1e6))

if json_out:
    out = {
        "date": "$(date -u +%FT%TZ)", "machine": "$(machine_line)", "scratch": "$(fs_line "$SCRATCH")",
        "binaries": "$BIN_DIR ($BIN_ID)",
        "units": "MB = 1e6 bytes",
        "load_average_start": "$LOAD_START", "load_average_end": "$(cut -d' ' -f1-3 /proc/loadavg)",
        "link_size_bytes": $SIZE_BYTES, "limited_size_bytes": $LIMIT_SIZE_BYTES,
        "link_snapshot": "$LINK_SNAP", "limited_snapshot": "$LIMITED_SNAP",
        "snapshot_wall_s": $LINK_SNAP_WALL, "snapshot_cpu_s": $LINK_SNAP_CPU,
        "chacha20poly1305_ietf_bytes_per_second": {"median": chacha_med, "before": chacha_before, "after": chacha_after},
        "link_mb_per_s": {"median": link_med, "runs": link_mb},
        "link_wire_mb_per_s": {"median": med(link_wire), "runs": link_wire},
        "limited_mb_per_s": {"median": lim_med, "runs": lim_mb, "limit_bytes_per_s": limit},
        "targets": [
            {"target": "link >= %.0f%% of single-core ChaCha20-Poly1305" % (100 * target_ratio),
             "value": ratio, "status": "PASS" if ok_ratio else "FAIL"},
            {"target": "limited rate within %.0f%% of the limit" % (100 * tolerance),
             "value": dev, "status": "PASS" if ok_limit else "FAIL"},
        ],
        "runs": rows,
    }
    with open(json_out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
PY
}

# --- main --------------------------------------------------------------------

main() {
  parse_args "$@"
  check_tools
  setup_scratch
  trap cleanup EXIT
  trap on_signal INT TERM
  local start
  start=$(date +%s)
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  log "scratch $(fs_line "$SCRATCH"); runs: $RUNS; link data $(human_bytes "$SIZE_BYTES"), limited $(human_bytes "$LIMIT_SIZE_BYTES") at $LIMIT B/s"
  make_keys
  prepare_snapshots

  log "ChaCha20-Poly1305 reference (5 repetitions)"
  chacha_bench before
  local run
  for ((run = 1; run <= RUNS; run++)); do
    log "link run $run/$RUNS: fresh hub, enroll, push $LINK_SNAP"
    push_run link "$run" "$LINK_SNAP"
  done
  log "ChaCha20-Poly1305 reference again (5 repetitions)"
  chacha_bench after
  for ((run = 1; run <= RUNS; run++)); do
    log "rate-limited run $run/$RUNS: push $LIMITED_SNAP --limit $LIMIT"
    push_run limited "$run" "$LIMITED_SNAP" "$LIMIT"
  done

  report
  [[ -z $JSON_OUT ]] || log "JSON written to $JSON_OUT"
  log "done in $(($(date +%s) - start)) s"
}

main "$@"

#!/usr/bin/env bash
# hub-ingest.sh: how fast a real ferry-hub ingests snapshots on loopback, with
# 1 and with 16 concurrent uploaders, beside the bare link's throughput
# measured in the same run. See bench/README.md, "Hub ingest".
#
# Once: a tenant keyset and 1 + 16 agent key files; 1 GiB of incompressible
# data snapshotted into one agent store (the "big" snapshot), and 16 x 64 MiB
# of distinct incompressible data, each snapshotted into its own agent store
# with its own agent key (nothing dedups across uploaders). Then, --runs
# times, in this order:
#   link   ferry-link-peer serve (the bare link receiver, no catalog), one
#          push of the big snapshot: MB/s = bytes_sent / seconds (push report)
#   hub1   a fresh ferry-hub (init + run), tenant and join token over REST,
#          one agent enrolls and pushes the big snapshot: same MB/s
#   hub16  a fresh ferry-hub, 16 agents enrolled, 16 pushes started at once:
#          aggregate MB/s = total bytes_sent / wall time from the first start
#          to the last finish (measured here); every push must succeed and the
#          hub must list the 16 snapshots
# MB = 10^6 bytes throughout. The tables show medians and every run's value.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
readonly ROOT
readonly PASSPHRASE="hub-ingest benchmark passphrase"
readonly TENANT=bench
# Targets (hub issue): 1 uploader >= 70% of the link; 16 uploaders "no
# collapse" = aggregate >= 70% of the 1-uploader hub rate of the same run.
readonly TARGET_HUB1=0.70 TARGET_HUB16=0.70
readonly PORT_TIMEOUT=30

usage() {
  cat <<'EOF'
usage: bench/hub-ingest.sh [options]

Measures a real ferry-hub (catalog, REST, tenant store) ingesting snapshots of
incompressible data over loopback, with 1 uploader and with 16 concurrent
uploaders, beside the bare link (ferry-link-peer serve) measured in the same
run, and prints markdown tables of medians. MB = 10^6 bytes.

Targets: hub with 1 uploader >= 70% of the link's MB/s; with 16 uploaders
"no collapse", defined as an aggregate MB/s >= 70% of the 1-uploader hub
MB/s of the same run (and every push succeeds, the hub lists every snapshot).

  --size SIZE               the snapshot pushed by the link and 1-uploader
                            runs (default 1GiB; B, KiB, MiB, GiB, KB, MB, GB)
  --per-uploader-size SIZE  each concurrent uploader's snapshot (default 64MiB)
  --uploaders N             concurrent uploaders (default 16)
  --runs N                  runs of each kind; medians are reported (default 3)
  --quick                   smoke test: 64 MiB, 16 x 4 MiB, 1 run (explicit
                            --size/--per-uploader-size/--runs still win)
  --scratch DIR             where the data, stores and logs go (default: a new
                            directory under /var/tmp); must be absent or
                            empty; removed at the end unless --keep (after a
                            failure only its logs are kept). Its filesystem
                            is printed: agents read from it, hubs write to it
  --keep                    keep the scratch directory (stores, logs)
  --json FILE               also write every run, the medians and the targets
  -h, --help                this text

Environment: FERRY_BIN (default build/bin, relative to the repository) must
hold ferry-hub, ferry-link-peer and ferryctl; they are copied into the scratch
directory at the start. This script builds nothing
(ninja -C build ferry-hub ferry-link-peer ferryctl). Needs /usr/bin/time (GNU
time), curl, python3, and about 3.3x --size free on the scratch filesystem.
Exit status: 0 when everything ran (targets may still FAIL: this is a
measurement), 1 when something broke (a push failed, a hub did not start, lost
a snapshot or did not exit 0 on SIGTERM), 2 on usage.
EOF
}

log() { printf '[hub-ingest %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- options -----------------------------------------------------------------

SIZE="" PER_SIZE="" RUNS="" SCRATCH="" JSON_OUT=""
UPLOADERS=16
QUICK=0 KEEP=0

parse_args() {
  while (($#)); do
    case $1 in
      --size | --per-uploader-size | --uploaders | --runs | --scratch | --json)
        (($# >= 2)) || { usage >&2; exit 2; }
        case $1 in
          --size) SIZE=$2 ;;
          --per-uploader-size) PER_SIZE=$2 ;;
          --uploaders) UPLOADERS=$2 ;;
          --runs) RUNS=$2 ;;
          --scratch) SCRATCH=$2 ;;
          --json) JSON_OUT=$2 ;;
        esac
        shift 2
        ;;
      --quick) QUICK=1 && shift ;;
      --keep) KEEP=1 && shift ;;
      -h | --help) usage && exit 0 ;;
      *) echo "hub-ingest.sh: unknown argument '$1'" >&2 && usage >&2 && exit 2 ;;
    esac
  done
  if ((QUICK)); then
    : "${SIZE:=64MiB}" "${PER_SIZE:=4MiB}" "${RUNS:=1}"
  fi
  : "${SIZE:=1GiB}" "${PER_SIZE:=64MiB}" "${RUNS:=3}"
  [[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs wants a positive integer" >&2; exit 2; }
  if [[ ! $UPLOADERS =~ ^[1-9][0-9]*$ ]] || ((UPLOADERS > 256)); then
    echo "--uploaders wants an integer from 1 to 256" >&2
    exit 2
  fi
  SIZE_BYTES=$(size_to_bytes "$SIZE") || { echo "bad --size '$SIZE'" >&2; exit 2; }
  PER_BYTES=$(size_to_bytes "$PER_SIZE") || { echo "bad --per-uploader-size '$PER_SIZE'" >&2; exit 2; }
  ((SIZE_BYTES >= 1048576 && PER_BYTES >= 1048576)) || { echo "sizes must be at least 1 MiB" >&2; exit 2; }
  if [[ -n $JSON_OUT ]]; then
    mkdir -p -- "$(dirname -- "$JSON_OUT")"
    JSON_OUT=$(cd "$(dirname -- "$JSON_OUT")" && pwd)/$(basename -- "$JSON_OUT")
  fi
}

# --- environment -------------------------------------------------------------

check_tools() {
  BIN_DIR=${FERRY_BIN:-build/bin}
  [[ $BIN_DIR == /* ]] || BIN_DIR=$ROOT/$BIN_DIR
  HUB=$BIN_DIR/ferry-hub
  PEER=$BIN_DIR/ferry-link-peer
  FERRYCTL=$BIN_DIR/ferryctl
  local missing=() f
  for f in "$HUB" "$PEER" "$FERRYCTL"; do
    [[ -x $f ]] || missing+=("$(basename "$f")")
  done
  if ((${#missing[@]})); then
    echo "hub-ingest.sh: missing in $BIN_DIR: ${missing[*]}" >&2
    echo "  this script builds nothing; build them first, e.g." >&2
    echo "  ninja -C $(dirname "$BIN_DIR") ferry-hub ferry-link-peer ferryctl" >&2
    exit 1
  fi
  [[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is required (apt-get install time)"
  command -v python3 >/dev/null || die "python3 is required (it parses the JSON reports)"
  command -v curl >/dev/null || die "curl is required (the hub's REST API)"
}

setup_scratch() {
  if [[ -z $SCRATCH ]]; then
    SCRATCH=$(mktemp -d /var/tmp/ferry-hub-ingest.XXXXXX)
  else
    mkdir -p "$SCRATCH"
    SCRATCH=$(cd "$SCRATCH" && pwd)
    [[ -z $(ls -A "$SCRATCH") ]] || { echo "--scratch $SCRATCH is not empty" >&2; exit 2; }
  fi
  # Every run uses the same binaries, even if the build tree is relinked
  # meanwhile: copies in the scratch directory.
  mkdir -p "$SCRATCH/bin"
  cp -- "$HUB" "$PEER" "$FERRYCTL" "$SCRATCH/bin/"
  BIN_ID="ferry-hub sha256 $(sha256sum -- "$HUB" | cut -c1-12) built $(date -u -r "$HUB" +%FT%TZ),"
  BIN_ID+=" ferry-link-peer sha256 $(sha256sum -- "$PEER" | cut -c1-12) built $(date -u -r "$PEER" +%FT%TZ)"
  HUB=$SCRATCH/bin/ferry-hub
  PEER=$SCRATCH/bin/ferry-link-peer
  FERRYCTL=$SCRATCH/bin/ferryctl
  DATA_DIR=$SCRATCH/data
  AGENT_DIR=$SCRATCH/agents
  RUNS_DIR=$SCRATCH/runs
  LOG_DIR=$SCRATCH/logs
  RESULTS=$SCRATCH/results.jsonl
  mkdir -p "$DATA_DIR" "$AGENT_DIR" "$RUNS_DIR" "$LOG_DIR"
  : >"$RESULTS"
  # Both sets of agent stores, one receiver's store at a time (deleted after
  # each run) and one uploader's data (deleted once snapshotted); the big
  # data set is deleted before the others are written.
  local total=$((UPLOADERS * PER_BYTES)) big need avail
  big=$((SIZE_BYTES > total ? SIZE_BYTES : total))
  need=$(((SIZE_BYTES + total + big) * 11 / 10 + PER_BYTES))
  avail=$(df -B1 --output=avail -- "$SCRATCH" | tail -n 1 | tr -d ' ')
  if ((avail < need)); then
    die "$SCRATCH has $(human_bytes "$avail") free, needs about $(human_bytes "$need") (agent stores + one receiver store + data)"
  fi
}

SERVER_PID=""
PUSH_PIDS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_all_quietly
  if ((KEEP)); then
    log "scratch directory kept: $SCRATCH"
  elif [[ -n ${SCRATCH:-} && -d $SCRATCH ]]; then
    if ((rc == 0)); then
      rm -rf -- "$SCRATCH"
    else
      # Keep the logs of a failed run, not the gigabytes.
      rm -rf -- "${SCRATCH:?}/data" "${SCRATCH:?}/bin"
      find "$SCRATCH" -type d \( -name store -o -name cache \) -prune -exec rm -rf -- {} + 2>/dev/null || true
      log "logs of the failed run kept in $SCRATCH (remove it when done)"
    fi
  fi
  exit "$rc"
}
on_signal() {
  log "interrupted"
  exit 130
}

# Only the processes this script started, by their pids.
stop_all_quietly() {
  local pid
  for pid in "${PUSH_PIDS[@]}"; do
    # PUSH_PIDS are GNU time processes: their push child first.
    pkill -TERM -P "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PUSH_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  PUSH_PIDS=()
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

# --- measuring ---------------------------------------------------------------

now_s() { date +%s.%N; }

# --- preparation -------------------------------------------------------------

export FERRY_PASSPHRASE=$PASSPHRASE

# The agents: index 0 holds the big snapshot, 1..UPLOADERS one each. Every
# agent has its own agent key file (its own manifest signing key: the hub
# accepts a commit only when it is signed by the enrolled agent's key).
AGENT_STORE=() AGENT_KEY=() AGENT_SNAP=()

make_keys() {
  KEYSET=$AGENT_DIR/tenant.keyset
  "$FERRYCTL" keys init --out "$KEYSET" --argon2-memory 8 --argon2-ops 1 >"$LOG_DIR/keys.log" 2>&1 ||
    die "ferryctl keys init failed: $(last_lines "$LOG_DIR/keys.log")"
  local i
  for ((i = 0; i <= UPLOADERS; i++)); do
    AGENT_KEY[i]=$AGENT_DIR/$(agent_name "$i").key
    "$FERRYCTL" keys export-agent --keyset "$KEYSET" --out "${AGENT_KEY[i]}" >>"$LOG_DIR/keys.log" 2>&1 ||
      die "ferryctl keys export-agent failed: $(last_lines "$LOG_DIR/keys.log")"
  done
}

agent_name() { if (($1 == 0)); then echo big; else printf 'u%02d\n' "$1"; fi; }

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
}

# snapshot_agent I BYTES: fresh data, one snapshot into agent I's own store,
# data deleted; sets AGENT_SNAP[I], SNAP_WALL, SNAP_CPU.
snapshot_agent() {
  local i=$1 bytes=$2 name
  name=$(agent_name "$i")
  local src=$DATA_DIR/$name out=$LOG_DIR/snapshot-$name
  make_data "$src" "$bytes"
  AGENT_STORE[i]=$AGENT_DIR/$name/store
  mkdir -p "$AGENT_DIR/$name/cache"
  /usr/bin/time -f '%e %U %S %M' -o "$out.time" -- env XDG_CACHE_HOME="$AGENT_DIR/$name/cache" \
    "$FERRYCTL" snapshot create --store "${AGENT_STORE[i]}" --keyset "${AGENT_KEY[i]}" --name "$name" \
    --label bench=hub-ingest "$src" >"$out.out" 2>"$out.err" ||
    die "ferryctl snapshot create ($name) failed: $(last_lines "$out.err")"
  AGENT_SNAP[i]=$(awk 'NF { last = $0 } END { print last }' "$out.out")
  [[ ${AGENT_SNAP[i]} =~ ^[0-9a-f]+$ ]] || die "ferryctl snapshot create ($name) printed no snapshot id"
  rm -rf -- "$src"
  local user sys
  read -r SNAP_WALL user sys _ < <(tail -n 1 "$out.time")
  SNAP_CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
}

prepare_snapshots() {
  log "big snapshot: $(human_bytes "$SIZE_BYTES") from /dev/urandom into its own agent store"
  snapshot_agent 0 "$SIZE_BYTES"
  BIG_SNAP_WALL=$SNAP_WALL BIG_SNAP_CPU=$SNAP_CPU
  log "  ${AGENT_SNAP[0]:0:12} in ${SNAP_WALL}s wall, ${SNAP_CPU}s CPU"
  log "$UPLOADERS uploader snapshots of $(human_bytes "$PER_BYTES") each, distinct data, one store each"
  local i
  for ((i = 1; i <= UPLOADERS; i++)); do
    snapshot_agent "$i" "$PER_BYTES"
  done
  sync
  log "  done"
}

# --- receivers ---------------------------------------------------------------

# wait_port DIR LOG: until DIR/port exists; sets PORT.
wait_port() {
  local dir=$1 logf=$2 waited=0
  while [[ ! -s $dir/port ]]; do
    kill -0 "$SERVER_PID" 2>/dev/null || {
      wait "$SERVER_PID" 2>/dev/null || true
      SERVER_PID=""
      die "the receiver exited before writing its port: $(last_lines "$logf")"
    }
    ((waited < PORT_TIMEOUT * 10)) || die "the receiver wrote no port file within ${PORT_TIMEOUT}s"
    sleep 0.1
    waited=$((waited + 1))
  done
  PORT=$(tr -d '[:space:]' <"$dir/port")
  LINK_URL="ws://127.0.0.1:$PORT"
}

# enroll DIR I TOKEN: agent I gets a fresh link identity DIR/NAME.link and
# enrolls with TOKEN under its name.
enroll() {
  local dir=$1 i=$2 token=$3 name
  name=$(agent_name "$i")
  "$PEER" enroll --key "$dir/$name.link" --hub "$LINK_URL" --hub-key "$SERVER_KEY" --token "$token" \
    --name "$name" --keyset "${AGENT_KEY[i]}" >"$dir/enroll-$name.out" 2>"$dir/enroll-$name.err" ||
    die "enroll of $name failed: $(last_lines "$dir/enroll-$name.err")"
}

# start_link DIR: the bare link receiver (ferry-link-peer serve: a store, no
# catalog, no REST) with agent 0 enrolled.
start_link() {
  local dir=$1
  SERVER_LOG=$dir/serve.err
  SERVER_KEY=$("$PEER" init --state "$dir/recv" 2>"$dir/init.err") ||
    die "ferry-link-peer init failed: $(last_lines "$dir/init.err")"
  local token
  token=$("$PEER" add-token --state "$dir/recv" --tenant "$TENANT" 2>"$dir/add-token.err") ||
    die "ferry-link-peer add-token failed: $(last_lines "$dir/add-token.err")"
  "$PEER" serve --state "$dir/recv" --port-file "$dir/port" >"$dir/serve.out" 2>"$SERVER_LOG" &
  SERVER_PID=$!
  wait_port "$dir" "$SERVER_LOG"
  enroll "$dir" 0 "$token"
}

# api METHOD PATH [BODY]: one REST call with the admin token; prints the answer.
api() {
  local method=$1 path=$2 body=${3:-}
  local args=(-fsS --max-time 30 -X "$method" -H "Authorization: Bearer $ADMIN_TOKEN")
  [[ -z $body ]] || args+=(-H 'Content-Type: application/json' -d "$body")
  curl "${args[@]}" "http://127.0.0.1:$PORT$path"
}

json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# start_hub DIR FIRST LAST: a fresh ferry-hub data dir, `ferry-hub run` in the
# background, tenant over REST, agents FIRST..LAST enrolled with one REST
# join token each.
start_hub() {
  local dir=$1 first=$2 last=$3
  SERVER_LOG=$dir/hub.log
  "$HUB" init --data-dir "$dir/hub" >"$dir/init.out" 2>"$dir/init.err" ||
    die "ferry-hub init failed: $(last_lines "$dir/init.err")"
  SERVER_KEY=$(sed -n 's/^hub fingerprint (agents pin this): //p' "$dir/init.out")
  ADMIN_TOKEN=$(sed -n 's/^admin token (shown once; keep it secret): //p' "$dir/init.out")
  [[ -n $SERVER_KEY && -n $ADMIN_TOKEN ]] ||
    die "ferry-hub init printed no fingerprint or admin token: $(last_lines "$dir/init.out")"
  "$HUB" run --data-dir "$dir/hub" --listen 127.0.0.1:0 --port-file "$dir/port" --log-format text \
    >"$dir/hub.out" 2>"$SERVER_LOG" &
  SERVER_PID=$!
  wait_port "$dir" "$SERVER_LOG"
  api GET /readyz >/dev/null || die "GET /readyz failed: $(last_lines "$SERVER_LOG")"
  api POST /v1/tenants "{\"name\":\"$TENANT\"}" >"$dir/tenant.json" ||
    die "POST /v1/tenants failed: $(last_lines "$SERVER_LOG")"
  local i token name
  for ((i = first; i <= last; i++)); do
    name=$(agent_name "$i")
    token=$(api POST "/v1/tenants/$TENANT/enrollment-tokens" \
      "{\"ttl_seconds\":3600,\"agent_name\":\"$name\"}" | json_field token) ||
      die "POST enrollment-tokens for $name failed: $(last_lines "$SERVER_LOG")"
    enroll "$dir" "$i" "$token"
  done
}

# stop_server: SIGTERM; the receiver must exit 0.
stop_server() {
  local rc=0
  kill -TERM "$SERVER_PID" || die "could not signal the receiver ($SERVER_PID)"
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  ((rc == 0)) || die "the receiver exited with status $rc after SIGTERM: $(last_lines "$SERVER_LOG")"
}

# --- one measured run --------------------------------------------------------

# timed_pushes KIND RUN DIR I...: agents I... push their snapshots at once;
# appends one JSON row to RESULTS.
timed_pushes() {
  local kind=$1 run=$2 dir=$3
  shift 3
  local agents=("$@") i name
  sync
  local cpu0 busy0 idle0 busy1 idle1 stall0 stall1 t0 t1
  cpu0=$(proc_cpu_s "$SERVER_PID") || die "cannot read /proc/$SERVER_PID/stat"
  read -r busy0 idle0 < <(cpu_jiffies)
  stall0=$(cpu_stall_us)
  PUSH_PIDS=()
  t0=$(now_s)
  for i in "${agents[@]}"; do
    name=$(agent_name "$i")
    /usr/bin/time -f '%e %U %S %M' -o "$dir/push-$name.time" -- "$PEER" push --key "$dir/$name.link" \
      --hub "$LINK_URL" --hub-key "$SERVER_KEY" --store "${AGENT_STORE[i]}" --snapshot "${AGENT_SNAP[i]}" \
      >"$dir/push-$name.json" 2>"$dir/push-$name.err" &
    PUSH_PIDS+=($!)
  done
  local rcs=() k rc
  for k in "${!PUSH_PIDS[@]}"; do
    rc=0
    wait "${PUSH_PIDS[k]}" || rc=$?
    rcs+=("$rc")
  done
  t1=$(now_s)
  PUSH_PIDS=()
  stall1=$(cpu_stall_us)
  read -r busy1 idle1 < <(cpu_jiffies)
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    local server_rc=0
    wait "$SERVER_PID" || server_rc=$?
    SERVER_PID=""
    die "the receiver stopped during the pushes ($kind run $run) with status $server_rc:" \
      "$(last_lines "$SERVER_LOG" 2) (logs: $dir)"
  fi
  local cpu1 rss
  cpu1=$(proc_cpu_s "$SERVER_PID") || die "cannot read /proc/$SERVER_PID/stat"
  rss=$(proc_peak_rss_kib "$SERVER_PID")
  for k in "${!agents[@]}"; do
    name=$(agent_name "${agents[k]}")
    ((rcs[k] == 0)) || die "push of $name ($kind run $run) failed with status ${rcs[k]}: $(last_lines "$dir/push-$name.err")"
  done
  # What the hub's catalog lists (the bare link receiver has no catalog).
  local listed=""
  if [[ $kind != link ]]; then
    listed=$dir/snapshots.json
    api GET "/v1/tenants/$TENANT/snapshots?limit=1000" >"$listed" ||
      die "GET snapshots failed ($kind run $run): $(last_lines "$SERVER_LOG")"
  fi
  stop_server
  local files=()
  for i in "${agents[@]}"; do
    name=$(agent_name "$i")
    files+=("$name" "${AGENT_SNAP[i]}" "$dir/push-$name.json" "$dir/push-$name.time")
  done
  KIND=$kind RUN=$run T0=$t0 T1=$t1 CPU0=$cpu0 CPU1=$cpu1 RSS=${rss:-0} NPROC=$(nproc) \
    BUSY=$((busy1 - busy0)) IDLE=$((idle1 - idle0)) STALL=$((stall1 - stall0)) \
    LISTED=$listed SERVER_LOG=$SERVER_LOG \
    python3 - "${files[@]}" >>"$RESULTS" <<'PY' || die "$kind run $run: reports or the hub's listing are wrong (logs: $dir)"
import json, os, re, sys
e = os.environ
args = sys.argv[1:]
pushes = []
for k in range(0, len(args), 4):
    name, snap, report, timef = args[k:k + 4]
    text = open(report).read().strip().splitlines()
    if not text:
        sys.exit(f"push of {name} printed no report")
    r = json.loads(text[-1])
    if not r.get("ok"):
        sys.exit(f"push of {name} says not ok: {r.get('error', '')}")
    if not r["snapshot"].startswith(snap):
        sys.exit(f"push of {name} pushed {r['snapshot']}, not {snap}")
    wall, user, sys_s, rss = open(timef).read().split()[-4:]
    pushes.append({"agent": name, "wall_s": float(wall), "cpu_s": round(float(user) + float(sys_s), 2),
                   "user_s": float(user), "sys_s": float(sys_s), "peak_rss_kib": int(rss),
                   "mb_per_s": r["bytes_sent"] / r["seconds"] / 1e6 if r["seconds"] > 0 else None,
                   "report": r})
if e["LISTED"]:
    got = json.load(open(e["LISTED"]))["snapshots"]
    want = {p["report"]["snapshot"]: p["agent"] for p in pushes}
    have = {s["id"]: s["agent"] for s in got}
    if have != want:
        sys.exit(f"the hub lists {len(have)} snapshots {sorted(have.items())}, expected {sorted(want.items())}")
log_lines = open(e["SERVER_LOG"], errors="replace").read().splitlines()
bad = [l for l in log_lines if re.search(r": (warning|error|critical): ", l)]
u0, s0 = map(float, e["CPU0"].split()); u1, s1 = map(float, e["CPU1"].split())
wall = float(e["T1"]) - float(e["T0"])
busy, idle = int(e["BUSY"]), int(e["IDLE"])
total_bytes = sum(p["report"]["bytes_sent"] for p in pushes)
nproc = int(e["NPROC"])
row = {
    "kind": e["KIND"], "run": int(e["RUN"]), "uploaders": len(pushes),
    "wall_s": round(wall, 3), "bytes_sent": total_bytes,
    # 1 push: its own report (query + upload + commit, connect excluded);
    # several: total bytes over the wall time from the first start to the last finish.
    "mb_per_s": pushes[0]["mb_per_s"] if len(pushes) == 1 else total_bytes / wall / 1e6,
    "wall_mb_per_s": total_bytes / wall / 1e6,
    "per_uploader_mb_per_s": [p["mb_per_s"] for p in pushes],
    "push_cpu_s": round(sum(p["cpu_s"] for p in pushes), 2),
    "push_user_s": round(sum(p["user_s"] for p in pushes), 2),
    "push_sys_s": round(sum(p["sys_s"] for p in pushes), 2),
    "server_cpu_s": round(u1 + s1 - u0 - s0, 2), "server_user_s": round(u1 - u0, 2),
    "server_sys_s": round(s1 - s0, 2), "server_peak_rss_kib": int(e["RSS"] or 0),
    "busy_cores": round(nproc * busy / (busy + idle), 2) if busy + idle > 0 else None,
    "cpu_stall_pct": round(min(100.0, int(e["STALL"]) / 1e4 / wall), 1) if wall > 0 else None,
    "server_log_warnings": bad[:20], "server_log_warning_count": len(bad),
    "pushes": pushes,
}
print(json.dumps(row))
PY
  python3 - "$RESULTS" <<'PY' >&2
import json, statistics, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
per = r["per_uploader_mb_per_s"]
extra = "" if len(per) == 1 else " (per uploader %.1f-%.1f, median %.1f)" % (min(per), max(per), statistics.median(per))
print("[hub-ingest]   %s run %d: %.1f MB/s%s; %.1f MB sealed in %.2f s wall; CPU push %.2f s, receiver %.2f s; "
      "receiver peak RSS %.0f MiB; %.2f cores busy, CPU stall %.0f%%%s" % (
      r["kind"], r["run"], r["mb_per_s"], extra, r["bytes_sent"] / 1e6, r["wall_s"], r["push_cpu_s"],
      r["server_cpu_s"], r["server_peak_rss_kib"] / 1024, r["busy_cores"] or 0, r["cpu_stall_pct"] or 0,
      "; %d warning/error lines in the receiver's log" % r["server_log_warning_count"]
      if r["server_log_warning_count"] else ""))
PY
  if ((!KEEP)); then
    rm -rf -- "$dir/recv/store" "$dir/hub/tenants"
  fi
}

run_link() {
  local dir=$RUNS_DIR/link-$1
  mkdir -p "$dir"
  start_link "$dir"
  timed_pushes link "$1" "$dir" 0
}

run_hub1() {
  local dir=$RUNS_DIR/hub1-$1
  mkdir -p "$dir"
  start_hub "$dir" 0 0
  timed_pushes hub1 "$1" "$dir" 0
}

run_hubn() {
  local dir=$RUNS_DIR/hub$UPLOADERS-$1 i agents=()
  mkdir -p "$dir"
  start_hub "$dir" 1 "$UPLOADERS"
  for ((i = 1; i <= UPLOADERS; i++)); do agents+=("$i"); done
  timed_pushes "hub$UPLOADERS" "$1" "$dir" "${agents[@]}"
}

# --- report ------------------------------------------------------------------

report() {
  DATE_START=$DATE_START DATE_END=$(date -u +%FT%TZ) MACHINE=$(machine_line) FS=$(fs_line "$SCRATCH") \
    BIN_DIR=$BIN_DIR BIN_ID=$BIN_ID LOAD_START=$LOAD_START LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg) \
    SIZE_BYTES=$SIZE_BYTES PER_BYTES=$PER_BYTES UPLOADERS=$UPLOADERS NPROC=$(nproc) \
    BIG_SNAP=${AGENT_SNAP[0]} BIG_SNAP_WALL=$BIG_SNAP_WALL BIG_SNAP_CPU=$BIG_SNAP_CPU \
    T_HUB1=$TARGET_HUB1 T_HUBN=$TARGET_HUB16 JSON_OUT=$JSON_OUT SECONDS_TOTAL=$(($(date +%s) - START)) \
    python3 - "$RESULTS" <<'PY'
import json, os, statistics, sys
e = os.environ
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
n = int(e["UPLOADERS"])
kn = "hub%d" % n
med = statistics.median
t1, tn = float(e["T_HUB1"]), float(e["T_HUBN"])

def of(kind):
    return [r for r in rows if r["kind"] == kind]

link, hub1, hubn = of("link"), of("hub1"), of(kn)
link_mb = [r["mb_per_s"] for r in link]
hub1_mb = [r["mb_per_s"] for r in hub1]
hub1_wall_mb = [r["wall_mb_per_s"] for r in hub1]
hubn_mb = [r["mb_per_s"] for r in hubn]
# Ratios per run (same run's link / hub1), and of the medians.
r1_runs = [h / l for h, l in zip(hub1_mb, link_mb)]
rn_runs = [a / h for a, h in zip(hubn_mb, hub1_mb)]
r1 = med(hub1_mb) / med(link_mb)
rn = med(hubn_mb) / med(hub1_mb)
per_all = [v for r in hubn for v in r["per_uploader_mb_per_s"]]
ok1, okn = r1 >= t1, rn >= tn

def runs(vals, f="%.1f"):
    return ", ".join(f % v for v in vals)

def pct(vals):
    return runs([100 * v for v in vals], "%.1f%%")

def mid(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return med(vals) if vals else float("nan")

size, per = int(e["SIZE_BYTES"]), int(e["PER_BYTES"])
print("## Hub ingest on loopback: medians of %d run(s)\n" % len(link))
print("- date: %s to %s (%s s in all)" % (e["DATE_START"], e["DATE_END"], e["SECONDS_TOTAL"]))
print("- machine: %s" % e["MACHINE"])
print("- binaries: %s (%s), copied to the scratch dir at the start" % (e["BIN_DIR"], e["BIN_ID"]))
print("- scratch (agent stores, receiver stores, catalogs): %s" % e["FS"])
print("- load average: %s at start, %s at end; warm page cache (the agent stores were just written)"
      % (e["LOAD_START"], e["LOAD_END"]))
print("- link and 1 uploader: one snapshot %s of %.2f GiB from /dev/urandom (%d chunks, %.1f MB sealed); "
      "it took %s s wall, %s s CPU to make (not in the figures)"
      % (e["BIG_SNAP"][:12], size / 2**30, link[0]["pushes"][0]["report"]["chunks_sent"],
         link[0]["bytes_sent"] / 1e6, e["BIG_SNAP_WALL"], e["BIG_SNAP_CPU"]))
print("- %d uploaders: %d distinct snapshots of %.0f MiB each (%.1f MB sealed in all), one agent store and key each"
      % (n, n, per / 2**20, hubn[0]["bytes_sent"] / 1e6))
print("- MB = 10^6 bytes. 1 push: bytes_sent / seconds of its own report (connect excluded; query + upload +")
print("  commit included). %d pushes: total bytes_sent / wall time from the first start to the last finish" % n)
print()
print("| measurement | median | runs | target | result |")
print("|---|---:|---|---|---|")
print("| link (ferry-link-peer serve), 1 push, MB/s | %.1f | %s | | |" % (med(link_mb), runs(link_mb)))
print("| hub, 1 uploader, MB/s | %.1f | %s | | |" % (med(hub1_mb), runs(hub1_mb)))
print("| hub, 1 uploader / link | %.1f%% | %s | >= %.0f%% | %s |"
      % (100 * r1, pct(r1_runs), 100 * t1, "PASS" if ok1 else "FAIL"))
print("| hub, %d uploaders, aggregate MB/s | %.1f | %s | | |" % (n, med(hubn_mb), runs(hubn_mb)))
print("| hub, %d uploaders / 1 uploader (\"no collapse\") | %.1f%% | %s | >= %.0f%% | %s |"
      % (n, 100 * rn, pct(rn_runs), 100 * tn, "PASS" if okn else "FAIL"))
print("| hub, %d uploaders, per uploader MB/s | %.1f | %.1f-%.1f (all %d pushes) | | |"
      % (n, med(per_all), min(per_all), max(per_all), len(per_all)))
print("| hub, 1 uploader, MB/s over the push process's wall time | %.1f | %s | | |"
      % (med(hub1_wall_mb), runs(hub1_wall_mb)))
print()
print("| run kind | wall s | push CPU s (user+sys) | receiver CPU s (user+sys) | CPU s per GB | receiver peak RSS MiB | cores busy | CPU stall | receiver log warnings |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, rs in (("link, 1 push", link), ("hub, 1 uploader", hub1), ("hub, %d uploaders" % n, hubn)):
    print("| %s | %.2f | %.2f (%.2f+%.2f) | %.2f (%.2f+%.2f) | %.2f | %.0f | %.2f of %s | %.0f%% | %d |" % (
        label, mid(rs, "wall_s"), mid(rs, "push_cpu_s"), mid(rs, "push_user_s"), mid(rs, "push_sys_s"),
        mid(rs, "server_cpu_s"), mid(rs, "server_user_s"), mid(rs, "server_sys_s"),
        med([(r["push_cpu_s"] + r["server_cpu_s"]) / (r["bytes_sent"] / 1e9) for r in rs]),
        mid(rs, "server_peak_rss_kib") / 1024, mid(rs, "busy_cores"), e["NPROC"], mid(rs, "cpu_stall_pct"),
        sum(r["server_log_warning_count"] for r in rs)))
print()
print("Medians per run kind. Push CPU: the push processes under GNU time (summed over the %d pushes); "
      "receiver CPU: from /proc/PID/stat before and after the pushes; receiver peak RSS: VmHWM of the "
      "whole process (fresh each run); cores busy: machine-wide (/proc/stat); CPU stall: share of the wall "
      "time some task waited for a CPU (PSI)." % n)
warnings = [(r["kind"], r["run"], w) for r in rows for w in r["server_log_warnings"]]
for kind, run, w in warnings[:10]:
    print("- receiver log, %s run %d: %s" % (kind, run, w))

if e["JSON_OUT"]:
    out = {
        "date_start": e["DATE_START"], "date_end": e["DATE_END"], "seconds": int(e["SECONDS_TOTAL"]),
        "machine": e["MACHINE"], "scratch": e["FS"], "binaries": "%s (%s)" % (e["BIN_DIR"], e["BIN_ID"]),
        "units": "MB = 1e6 bytes",
        "load_average_start": e["LOAD_START"], "load_average_end": e["LOAD_END"],
        "size_bytes": size, "per_uploader_bytes": per, "uploaders": n,
        "big_snapshot": e["BIG_SNAP"], "big_snapshot_wall_s": float(e["BIG_SNAP_WALL"]),
        "big_snapshot_cpu_s": float(e["BIG_SNAP_CPU"]),
        "link_mb_per_s": {"median": med(link_mb), "runs": link_mb},
        "hub1_mb_per_s": {"median": med(hub1_mb), "runs": hub1_mb},
        "hub1_wall_mb_per_s": {"median": med(hub1_wall_mb), "runs": hub1_wall_mb},
        "hubn_aggregate_mb_per_s": {"median": med(hubn_mb), "runs": hubn_mb},
        "hubn_per_uploader_mb_per_s": {"median": med(per_all), "min": min(per_all), "max": max(per_all)},
        "targets": [
            {"target": "hub with 1 uploader >= %.0f%% of the link" % (100 * t1),
             "value": r1, "runs": r1_runs, "status": "PASS" if ok1 else "FAIL"},
            {"target": "no collapse: hub with %d uploaders, aggregate >= %.0f%% of the 1-uploader hub rate"
                       % (n, 100 * tn),
             "value": rn, "runs": rn_runs, "status": "PASS" if okn else "FAIL"},
        ],
        "runs": rows,
    }
    with open(e["JSON_OUT"], "w") as f:
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
  START=$(date +%s)
  DATE_START=$(date -u +%FT%TZ)
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  log "scratch $(fs_line "$SCRATCH"); runs: $RUNS; $(human_bytes "$SIZE_BYTES") for link and 1 uploader," \
    "$UPLOADERS x $(human_bytes "$PER_BYTES") for $UPLOADERS uploaders"
  make_keys
  prepare_snapshots
  local run
  for ((run = 1; run <= RUNS; run++)); do
    log "run $run/$RUNS: link (ferry-link-peer serve), 1 push of ${AGENT_SNAP[0]:0:12}"
    run_link "$run"
    log "run $run/$RUNS: fresh ferry-hub, 1 uploader"
    run_hub1 "$run"
    log "run $run/$RUNS: fresh ferry-hub, $UPLOADERS uploaders at once"
    run_hubn "$run"
  done
  report
  [[ -z $JSON_OUT ]] || log "JSON written to $JSON_OUT"
  log "done in $(($(date +%s) - START)) s"
}

main "$@"

#!/usr/bin/env bash
# compare-rsync.sh: a real ferry-agent replicating to a real ferry-hub on
# loopback, beside rsync over ssh on loopback: same dataset, same run, three
# phases (initial copy, 1% change, no change). See bench/README.md,
# "Agent to hub vs rsync over ssh".
#
# Per run: a fresh dataset (ferry-gen-dataset mixed, seed 1), a fresh hub data
# dir and agent state dir, fresh rsync destinations. One sshd of our own for
# the whole script (throwaway host and client keys, a free loopback port).
# For each phase and tool: wall time, CPU time (user + sys) of every process
# involved, and the bytes on the wire in both directions, counted by nftables
# counters on each tool's loopback port. MB = 10^6 bytes.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
readonly ROOT
readonly PASSPHRASE="compare-rsync benchmark passphrase"
readonly TENANT=bench
readonly MIXED_SEED=1 MUTATE_SEED=3 MUTATE_FRACTION=0.01
# Targets: initial copy no slower than rsync; 1% change and no change at most
# half of rsync's time; bytes on the wire for the 1% change at most rsync's.
readonly TARGET_INITIAL=1.0 TARGET_CHANGE=0.5 TARGET_NOCHANGE=0.5
readonly START_TIMEOUT=30 COMMIT_TIMEOUT=1800

usage() {
  cat <<'EOF'
usage: bench/compare-rsync.sh [options]

A real ferry-agent replicating to a real ferry-hub on loopback, against
`rsync -a --delete` over ssh on loopback (its own sshd, default cipher), on the
same dataset in the same run, in three phases: initial copy, after the same 1%
change (ferry-gen-dataset mutate), and with no change. For each phase and tool:
wall time, CPU time (user + sys of every process involved) and bytes on the
wire in both directions (nftables counters on each tool's loopback port, IP
headers included). Prints markdown tables of medians and a PASS/FAIL line per
target. Ferry's link compresses (LZ4, where it helps); plain rsync does not,
so an `rsync -z` column is shown too (information only: the targets compare
with plain rsync). MB = 10^6 bytes.

Targets: initial copy, Ferry's time <= rsync's; after the 1% change and with
no change, Ferry's time <= 0.5x rsync's; bytes on the wire for the 1% change,
Ferry's <= rsync's.

  --runs N        runs; medians are reported (default 3)
  --size SIZE     the dataset: a number of MiB, or with a unit (256, 1GiB)
                  (default 256 MiB)
  --files N       files in the dataset (default: one per 210 KiB, as the 1 GiB
                  / 5,000 files of compare-peers.sh: 1,250 for 256 MiB)
  --chunk-size S  the agent dataset's average chunk size (chunkSize in the
                  agent config: 4KiB..1MiB, default 64KiB)
  --no-z          leave out the `rsync -z` column
  --scratch DIR   where data, stores, destinations and logs go (default: a
                  new directory under /var/tmp); must be absent or empty;
                  removed at the end unless --keep (after a failure only the
                  logs are kept)
  --keep          keep the scratch directory
  -h, --help      this text

Needs root (nftables counters, its own sshd). Installs what is missing with
apt-get (rsync, openssh-server, openssh-client, nftables, time, curl,
python3). FERRY_BIN (default build/bin) must hold ferry-hub, ferry-agent,
ferryctl and ferry-gen-dataset; missing ones are built there with ninja. They
are copied into the scratch directory at the start. Touches nothing of the
system's sshd or ~/.ssh; adds one nftables table (removed at exit) and
creates /run/sshd when it is missing (sshd needs it; removed at exit).
Exit status: 0 when everything ran and every copy matched its source (targets
may still FAIL: this is a measurement), 1 when something broke or a copy
differed, 2 on usage.
EOF
}

log() { printf '[compare-rsync %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- options -----------------------------------------------------------------

RUNS=3 SIZE=256 FILES="" SCRATCH="" KEEP=0 WITH_Z=1 CHUNK_SIZE=64KiB

parse_args() {
  while (($#)); do
    case $1 in
      --runs | --size | --files | --scratch | --chunk-size)
        (($# >= 2)) || { usage >&2; exit 2; }
        case $1 in
          --runs) RUNS=$2 ;;
          --size) SIZE=$2 ;;
          --files) FILES=$2 ;;
          --scratch) SCRATCH=$2 ;;
          --chunk-size) CHUNK_SIZE=$2 ;;
        esac
        shift 2
        ;;
      --no-z) WITH_Z=0 && shift ;;
      --keep) KEEP=1 && shift ;;
      -h | --help) usage && exit 0 ;;
      *) echo "compare-rsync.sh: unknown argument '$1'" >&2 && usage >&2 && exit 2 ;;
    esac
  done
  [[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs wants a positive integer" >&2; exit 2; }
  if [[ $SIZE =~ ^[0-9]+$ ]]; then
    SIZE_BYTES=$((SIZE * 1048576))
  else
    SIZE_BYTES=$(size_to_bytes "$SIZE") || { echo "bad --size '$SIZE'" >&2; exit 2; }
  fi
  ((SIZE_BYTES >= 4194304)) || { echo "--size must be at least 4 MiB" >&2; exit 2; }
  if [[ -z $FILES ]]; then
    FILES=$((SIZE_BYTES / 214748))
    ((FILES >= 20)) || FILES=20
  fi
  [[ $FILES =~ ^[1-9][0-9]*$ ]] || { echo "--files wants a positive integer" >&2; exit 2; }
  TOOLS=(ferry rsync)
  ((WITH_Z)) && TOOLS+=(rsync-z)
  return 0
}

# --- environment -------------------------------------------------------------

# Debian packages for what is missing, quietly (as scripts/deps does).
ensure_deps() {
  local missing=()
  command -v rsync >/dev/null || missing+=(rsync)
  [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
  command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || missing+=(openssh-client)
  command -v nft >/dev/null || missing+=(nftables)
  [[ -x /usr/bin/time ]] || missing+=(time)
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  ((${#missing[@]})) || return 0
  log "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install ${missing[*]} failed"
}

# ninja in the build tree that holds FERRY_BIN, for the missing binaries. The
# tree may be shared: a ninja that finds it locked or busy is retried.
build_missing() {
  local build_dir=$1 out
  shift
  [[ -f $build_dir/build.ninja ]] || {
    log "configuring $build_dir"
    cmake -S "$ROOT" -B "$build_dir" -G Ninja >"$BUILD_LOG" 2>&1 || die "cmake failed: $(last_lines "$BUILD_LOG" 10)"
  }
  local try
  for ((try = 1; try <= 40; try++)); do
    log "building $* in $build_dir (log: $BUILD_LOG)"
    if ninja -C "$build_dir" -j 2 "$@" >"$BUILD_LOG" 2>&1; then
      return 0
    fi
    out=$(cat "$BUILD_LOG")
    if [[ $out =~ [Ll]ock|[Bb]usy ]]; then
      log "  the build dir is busy; retrying in 30 s"
      sleep 30
      continue
    fi
    die "ninja $* failed: $(last_lines "$BUILD_LOG" 10)"
  done
  die "the build dir stayed busy"
}

check_tools() {
  [[ $(id -u) -eq 0 ]] || die "needs root (nftables counters, its own sshd on loopback)"
  ensure_deps
  BIN_DIR=${FERRY_BIN:-build/bin}
  [[ $BIN_DIR == /* ]] || BIN_DIR=$ROOT/$BIN_DIR
  local missing=() b
  for b in ferry-hub ferry-agent ferryctl ferry-gen-dataset; do
    [[ -x $BIN_DIR/$b ]] || missing+=("$b")
  done
  BUILD_LOG=$(mktemp /tmp/ferry-compare-rsync-build.XXXXXX)
  ((${#missing[@]} == 0)) || build_missing "$(dirname "$BIN_DIR")" "${missing[@]}"
  rm -f -- "$BUILD_LOG"
}

setup_scratch() {
  if [[ -z $SCRATCH ]]; then
    SCRATCH=$(mktemp -d /var/tmp/ferry-compare-rsync.XXXXXX)
  else
    mkdir -p "$SCRATCH"
    SCRATCH=$(cd "$SCRATCH" && pwd)
    [[ -z $(ls -A "$SCRATCH") ]] || { echo "--scratch $SCRATCH is not empty" >&2; exit 2; }
  fi
  # The same binaries for every run, even if the build tree is relinked meanwhile.
  mkdir -p "$SCRATCH/bin" "$SCRATCH/logs"
  local b
  for b in ferry-hub ferry-agent ferryctl ferry-gen-dataset; do
    cp -- "$BIN_DIR/$b" "$SCRATCH/bin/"
  done
  BIN_ID="ferry-agent sha256 $(sha256sum -- "$BIN_DIR/ferry-agent" | cut -c1-12) built $(date -u -r "$BIN_DIR/ferry-agent" +%FT%TZ),"
  BIN_ID+=" ferry-hub sha256 $(sha256sum -- "$BIN_DIR/ferry-hub" | cut -c1-12) built $(date -u -r "$BIN_DIR/ferry-hub" +%FT%TZ)"
  HUB=$SCRATCH/bin/ferry-hub
  AGENT=$SCRATCH/bin/ferry-agent
  FERRYCTL=$SCRATCH/bin/ferryctl
  GEN=$SCRATCH/bin/ferry-gen-dataset
  LOG_DIR=$SCRATCH/logs
  RESULTS=$SCRATCH/results.tsv
  : >"$RESULTS"
  # Source, hub store, agent outbox, two rsync destinations, the restore.
  local need avail
  need=$((SIZE_BYTES * 7))
  avail=$(df -B1 --output=avail -- "$SCRATCH" | tail -n 1 | tr -d ' ')
  ((avail >= need)) || die "$SCRATCH has $(human_bytes "$avail") free, needs about $(human_bytes "$need")"
}

# --- cleanup -----------------------------------------------------------------

AGENT_PID="" HUB_PID="" SSHD_PID="" NFT_TABLE="" MADE_RUN_SSHD=0 WRONG=0

stop_pid() { # PID: SIGTERM, then wait (our own children only)
  [[ -n $1 ]] || return 0
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$AGENT_PID"
  stop_pid "$HUB_PID"
  stop_pid "$SSHD_PID"
  AGENT_PID="" HUB_PID="" SSHD_PID=""
  [[ -z $NFT_TABLE ]] || nft delete table inet "$NFT_TABLE" 2>/dev/null || true
  if ((MADE_RUN_SSHD)); then rmdir /run/sshd 2>/dev/null || true; fi
  if [[ -n ${SCRATCH:-} && -d $SCRATCH ]]; then
    if ((KEEP)); then
      log "scratch directory kept: $SCRATCH"
    elif ((rc == 0)); then
      rm -rf -- "$SCRATCH"
    else
      # Keep the logs of a failed run, not the data.
      find "$SCRATCH" -mindepth 1 -maxdepth 2 -type d \( -name bin -o -name ssh -o -name src -o -name hub -o -name state \
        -o -name rsync-dst -o -name rsync-z-dst -o -name restore \) -prune -exec rm -rf -- {} + 2>/dev/null || true
      log "logs of the failed run kept in $SCRATCH (remove it when done)"
    fi
  fi
  exit "$rc"
}
on_signal() {
  log "interrupted"
  exit 130
}

# --- byte counters (nftables) ------------------------------------------------

# One table of our own, a chain on the output hook (a loopback packet passes
# it once), one counter per port and direction. Counted: IP packets with their
# headers, as the kernel hands them to lo (TSO/GSO: up to 64 KiB each).
setup_counters() {
  NFT_TABLE=ferry_compare_rsync_$$
  nft add table inet "$NFT_TABLE" || die "nft add table failed (needs root and nf_tables)"
  nft add chain inet "$NFT_TABLE" out '{ type filter hook output priority 0; policy accept; }' ||
    die "nft add chain failed"
}

# count_port NAME PORT: counters NAME-up (to PORT) and NAME-down (from PORT).
count_port() {
  nft add rule inet "$NFT_TABLE" out oifname lo tcp dport "$2" counter comment "\"$1-up\"" ||
    die "nft add rule failed"
  nft add rule inet "$NFT_TABLE" out oifname lo tcp sport "$2" counter comment "\"$1-down\"" ||
    die "nft add rule failed"
}

# get_counters NAME: CNT_UP, CNT_DOWN = bytes so far to and from NAME's port.
get_counters() {
  local out
  out=$(nft list chain inet "$NFT_TABLE" out | awk -v n="$1" '
    /counter/ && /comment/ {
      b = ""; for (i = 1; i < NF; i++) if ($i == "bytes") b = $(i + 1)
      if ($0 ~ "\"" n "-up\"") up = b; else if ($0 ~ "\"" n "-down\"") down = b
    }
    END { if (up == "" || down == "") exit 1; print up, down }') || die "cannot read the nftables counters of $1"
  read -r CNT_UP CNT_DOWN <<<"$out"
}

# --- sshd --------------------------------------------------------------------

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Our own sshd: throwaway host key and client key in SCRATCH/ssh, a free
# loopback port, the system's config and ~/.ssh untouched. The session's HOME
# is an empty directory, so the login shell reads no ~/.bashrc (on a
# developer's machine that may start pyenv or the like, which would be charged
# to rsync).
start_sshd() {
  local d=$SCRATCH/ssh
  mkdir -p "$d/home"
  chmod 700 "$d"
  ssh-keygen -q -t ed25519 -N '' -C compare-rsync-host -f "$d/host_key" || die "ssh-keygen failed"
  ssh-keygen -q -t ed25519 -N '' -C compare-rsync-client -f "$d/client_key" || die "ssh-keygen failed"
  cp -- "$d/client_key.pub" "$d/authorized_keys"
  SSH_PORT=$(free_port)
  cat >"$d/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $d/host_key
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $(id -un)
UsePAM no
X11Forwarding no
PrintMotd no
PrintLastLog no
SetEnv HOME=$d/home
LogLevel ERROR
EOF
  if [[ ! -d /run/sshd ]]; then
    mkdir -p /run/sshd && chmod 755 /run/sshd
    MADE_RUN_SSHD=1
  fi
  /usr/sbin/sshd -t -f "$d/sshd_config" 2>"$LOG_DIR/sshd-check.log" ||
    die "sshd -t rejects the config: $(last_lines "$LOG_DIR/sshd-check.log")"
  /usr/sbin/sshd -D -e -f "$d/sshd_config" 2>"$LOG_DIR/sshd.log" &
  SSHD_PID=$!
  SSH_CMD="ssh -p $SSH_PORT -i $d/client_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"
  local waited=0
  # shellcheck disable=SC2086
  until $SSH_CMD "$(id -un)@127.0.0.1" true 2>/dev/null; do
    kill -0 "$SSHD_PID" 2>/dev/null || die "sshd exited: $(last_lines "$LOG_DIR/sshd.log")"
    ((waited < START_TIMEOUT * 10)) || die "sshd did not answer within ${START_TIMEOUT}s"
    sleep 0.1
    waited=$((waited + 1))
  done
  wait_sshd_idle
  # The cipher ssh negotiates by default (reported, not chosen).
  # shellcheck disable=SC2086
  SSH_CIPHER=$($SSH_CMD -v "$(id -un)@127.0.0.1" true 2>&1 | sed -n 's/.*kex: client->server cipher: \([^ ]*\).*/\1/p' | head -n 1)
  wait_sshd_idle
  # What one ssh connection costs here (rsync pays it on every run): the
  # median of 5 `ssh HOST true`.
  local i t0 times=()
  for ((i = 0; i < 5; i++)); do
    t0=$EPOCHREALTIME
    # shellcheck disable=SC2086
    $SSH_CMD "$(id -un)@127.0.0.1" true || die "ssh to our sshd failed"
    times+=("$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')")
    wait_sshd_idle
  done
  SSH_CONNECT_S=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
  count_port ssh "$SSH_PORT"
}

# Until sshd has no connection child left: their CPU time is then in sshd's
# cutime/cstime, and their last packets have been counted.
wait_sshd_idle() {
  local waited=0
  while pgrep -P "$SSHD_PID" >/dev/null; do
    ((waited < 1000)) || die "an ssh session did not end within 10 s"
    sleep 0.01
    waited=$((waited + 1))
  done
}

# "user+sys" CPU seconds of sshd and every connection it reaped.
sshd_cpu() {
  awk -v hz="$BENCH_CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13 + $14 + $15) / hz }' "/proc/$SSHD_PID/stat"
}

# --- ferry ---------------------------------------------------------------------

export FERRY_PASSPHRASE=$PASSPHRASE

make_keys() {
  KEYSET=$SCRATCH/tenant.keyset
  AGENT_KEY=$SCRATCH/agent.key
  "$FERRYCTL" keys init --out "$KEYSET" --argon2-memory 8 --argon2-ops 1 >"$LOG_DIR/keys.log" 2>&1 ||
    die "ferryctl keys init failed: $(last_lines "$LOG_DIR/keys.log")"
  "$FERRYCTL" keys export-agent --keyset "$KEYSET" --out "$AGENT_KEY" >>"$LOG_DIR/keys.log" 2>&1 ||
    die "ferryctl keys export-agent failed: $(last_lines "$LOG_DIR/keys.log")"
}

# wait_file FILE PID LOG: until FILE is not empty; prints its content.
wait_file() {
  local f=$1 pid=$2 logf=$3 waited=0
  while [[ ! -s $f ]]; do
    kill -0 "$pid" 2>/dev/null || die "process $pid exited before writing $f: $(last_lines "$logf")"
    ((waited < START_TIMEOUT * 10)) || die "no $f within ${START_TIMEOUT}s: $(last_lines "$logf")"
    sleep 0.1
    waited=$((waited + 1))
  done
  tr -d '[:space:]' <"$f"
}

hub_api() { # METHOD PATH [BODY]
  local args=(-fsS --max-time 30 -X "$1" -H "Authorization: Bearer $ADMIN_TOKEN")
  [[ -z ${3:-} ]] || args+=(-H 'Content-Type: application/json' -d "$3")
  curl "${args[@]}" "http://127.0.0.1:$HUB_PORT$2"
}

# start_ferry DIR: fresh hub data dir, `ferry-hub run`, tenant and one join
# token over REST; the agent config (a local policy: every 24h, to the hub),
# `ferry-agent enroll`, `ferry-agent run`. Its source dir is empty: the new
# policy's first run (at start) takes an empty snapshot, so the session is
# up and every measured phase is a `ferry-agent snapshot` trigger.
start_ferry() {
  local dir=$1
  "$HUB" init --data-dir "$dir/hub" >"$dir/hub-init.out" 2>"$dir/hub-init.err" ||
    die "ferry-hub init failed: $(last_lines "$dir/hub-init.err")"
  HUB_KEY=$(sed -n 's/^hub fingerprint (agents pin this): //p' "$dir/hub-init.out")
  ADMIN_TOKEN=$(sed -n 's/^admin token (shown once; keep it secret): //p' "$dir/hub-init.out")
  [[ -n $HUB_KEY && -n $ADMIN_TOKEN ]] || die "ferry-hub init printed no fingerprint or admin token"
  HUB_LOG=$dir/hub.log
  "$HUB" run --data-dir "$dir/hub" --listen 127.0.0.1:0 --port-file "$dir/hub.port" --log-format text \
    >"$HUB_LOG" 2>&1 &
  HUB_PID=$!
  HUB_PORT=$(wait_file "$dir/hub.port" "$HUB_PID" "$HUB_LOG")
  hub_api GET /readyz >/dev/null || die "GET /readyz failed: $(last_lines "$HUB_LOG")"
  hub_api POST /v1/tenants "{\"name\":\"$TENANT\"}" >/dev/null || die "POST /v1/tenants failed: $(last_lines "$HUB_LOG")"
  local token
  token=$(hub_api POST "/v1/tenants/$TENANT/enrollment-tokens" '{"ttl_seconds":3600}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])') ||
    die "POST enrollment-tokens failed: $(last_lines "$HUB_LOG")"
  AGENT_CONFIG=$dir/agent.yaml
  cat >"$AGENT_CONFIG" <<EOF
agent: {name: bench-1}
stateDir: $dir/state
hubs:
  - {name: hub-a, url: "ws://127.0.0.1:$HUB_PORT"}
datasets:
  - {name: vol, path: $SRC, chunkSize: "$CHUNK_SIZE"}
keyset: {file: $AGENT_KEY}
api: {listen: "127.0.0.1:0"}
policies:
  - apiVersion: ferry/v1
    kind: MirrorPolicy
    metadata: {name: bench}
    spec: {datasets: [vol], schedule: {every: 24h}, targets: [{hub: hub-a}]}
EOF
  "$AGENT" enroll --config "$AGENT_CONFIG" --hub "ws://127.0.0.1:$HUB_PORT" --hub-key "$HUB_KEY" \
    --token "$token" >"$dir/enroll.out" 2>&1 || die "ferry-agent enroll failed: $(last_lines "$dir/enroll.out")"
  AGENT_LOG=$dir/agent.log
  "$AGENT" run --config "$AGENT_CONFIG" --log-format text >"$AGENT_LOG" 2>&1 &
  AGENT_PID=$!
  API_PORT=$(wait_file "$dir/state/api.port" "$AGENT_PID" "$AGENT_LOG")
  python3 "$SCRATCH/ferry_phase.py" wait-committed "$API_PORT" 1 60 ||
    die "the agent's first (empty) snapshot did not commit: $(last_lines "$AGENT_LOG")"
  count_port hub "$HUB_PORT"
}

stop_ferry() {
  local dir=$1 rc=0
  # For a look afterwards (--keep): the hub's and the agent's counters.
  hub_api GET /metrics >"$dir/hub-metrics.txt" 2>/dev/null || true
  curl -fsS --max-time 10 "http://127.0.0.1:$API_PORT/metrics" >"$dir/agent-metrics.txt" 2>/dev/null || true
  kill -TERM "$AGENT_PID" || die "could not signal ferry-agent"
  wait "$AGENT_PID" || rc=$?
  AGENT_PID=""
  ((rc == 0)) || die "ferry-agent exited with status $rc after SIGTERM: $(last_lines "$AGENT_LOG")"
  kill -TERM "$HUB_PID" || die "could not signal ferry-hub"
  wait "$HUB_PID" || rc=$?
  HUB_PID=""
  ((rc == 0)) || die "ferry-hub exited with status $rc after SIGTERM: $(last_lines "$HUB_LOG")"
}

# The trigger and the wait, timed in one process: `ferry-agent snapshot
# --json` (answers when the capture is done), then GET /v1/status every
# 20 ms until the snapshot's delivery to the hub reads "committed".
write_helper() {
  cat >"$SCRATCH/ferry_phase.py" <<'PY'
import http.client, json, resource, subprocess, sys, time

def status(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/v1/status")
        r = conn.getresponse()
        body = r.read()
        return json.loads(body) if r.status == 200 else None
    finally:
        conn.close()

mode = sys.argv[1]
if mode == "wait-committed":  # PORT N TIMEOUT: N deliveries committed
    port, n, timeout = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s = status(port)
        except OSError:
            s = None
        if s and sum(d["state"] == "committed" for d in s.get("deliveries", [])) >= n:
            sys.exit(0)
        time.sleep(0.05)
    sys.exit(1)

# snapshot AGENT CONFIG PORT TIMEOUT -> "wall capture client_cpu snapshot new_sealed_bytes"
agent, config, port, timeout = sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.monotonic()
p = subprocess.run([agent, "snapshot", "--config", config, "--json"], capture_output=True, text=True)
t_capture = time.monotonic()
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
if p.returncode != 0:
    sys.exit(f"ferry-agent snapshot exited {p.returncode}: {p.stderr.strip()} {p.stdout.strip()}")
answer = json.loads([l for l in p.stdout.splitlines() if l.strip()][-1])
snaps = [s for run in answer["runs"] for s in run.get("snapshots", [])]
if len(snaps) != 1:
    sys.exit(f"expected one snapshot, got: {p.stdout.strip()}")
snap = snaps[0]["snapshot"]
while True:
    s = status(port)
    state = next((d["state"] for d in (s or {}).get("deliveries", []) if d["snapshot"] == snap), None)
    if state == "committed":
        break
    if state == "failed":
        sys.exit(f"the delivery of {snap} failed: {json.dumps(s)}")
    if time.monotonic() - t0 > timeout:
        sys.exit(f"{snap} not committed within {timeout} s: {json.dumps(s)}")
    time.sleep(0.02)
t1 = time.monotonic()
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(f"{t1 - t0:.3f} {t_capture - t0:.3f} {cpu:.3f} {snap} {snaps[0].get('new_sealed_bytes', 0)}")
PY
}

# --- measured steps ------------------------------------------------------------

proc_cpu_total() { proc_cpu_s "$1" | awk '{ printf "%.2f\n", $1 + $2 }'; }

# Appends: run phase tool wall cpu up down stall-us a b c d, where for ferry
# a = capture s, b = agent CPU, c = hub CPU, d = new sealed bytes; for rsync
# a = -, b = client CPU (rsync + ssh), c = server CPU (sshd + rsync server),
# d = rsync's "Literal data" bytes.
step_ferry() {
  local run=$1 phase=$2 dir=$3
  sync
  local a0 h0 a1 h1 up0 down0 up1 down1 st0 st1 out
  a0=$(proc_cpu_total "$AGENT_PID") || die "ferry-agent is gone"
  h0=$(proc_cpu_total "$HUB_PID") || die "ferry-hub is gone"
  get_counters hub && up0=$CNT_UP down0=$CNT_DOWN
  st0=$(cpu_stall_us)
  out=$(python3 "$SCRATCH/ferry_phase.py" snapshot "$AGENT" "$AGENT_CONFIG" "$API_PORT" "$COMMIT_TIMEOUT" \
    2>"$dir/ferry-$phase.err") || die "ferry $phase (run $run): $(last_lines "$dir/ferry-$phase.err") (agent: $(last_lines "$AGENT_LOG" 2))"
  st1=$(cpu_stall_us)
  a1=$(proc_cpu_total "$AGENT_PID") || die "ferry-agent is gone"
  h1=$(proc_cpu_total "$HUB_PID") || die "ferry-hub is gone"
  get_counters hub && up1=$CNT_UP down1=$CNT_DOWN
  local wall capture client snap sealed
  read -r wall capture client snap sealed <<<"$out"
  LAST_SNAPSHOT=$snap
  awk -v OFS='\t' -v run="$run" -v phase="$phase" -v w="$wall" -v c="$capture" -v cl="$client" \
    -v a0="$a0" -v a1="$a1" -v h0="$h0" -v h1="$h1" -v up=$((up1 - up0)) -v down=$((down1 - down0)) \
    -v st=$((st1 - st0)) -v sealed="$sealed" 'BEGIN {
      printf "%s\t%s\tferry\t%.3f\t%.2f\t%d\t%d\t%d\t%.3f\t%.2f\t%.2f\t%d\n", run, phase, w,
        cl + (a1 - a0) + (h1 - h0), up, down, st, c, a1 - a0, h1 - h0, sealed }' >>"$RESULTS"
}

step_rsync() {
  local run=$1 phase=$2 tool=$3 dir=$4
  local dst=$dir/$tool-dst opts=(-a --delete --stats)
  [[ $tool == rsync-z ]] && opts+=(-z)
  sync
  local s0 s1 up0 down0 up1 down1 st0 st1 t0 t1 rc=0
  wait_sshd_idle
  s0=$(sshd_cpu)
  get_counters ssh && up0=$CNT_UP down0=$CNT_DOWN
  st0=$(cpu_stall_us)
  t0=$EPOCHREALTIME
  /usr/bin/time -f '%U %S' -o "$dir/$tool-$phase.time" -- \
    rsync "${opts[@]}" -e "$SSH_CMD" "$SRC/" "$(id -un)@127.0.0.1:$dst/" >"$dir/$tool-$phase.out" 2>&1 || rc=$?
  t1=$EPOCHREALTIME
  ((rc == 0)) || die "$tool $phase (run $run) exited $rc: $(last_lines "$dir/$tool-$phase.out")"
  wait_sshd_idle
  st1=$(cpu_stall_us)
  s1=$(sshd_cpu)
  get_counters ssh && up1=$CNT_UP down1=$CNT_DOWN
  local user sys literal
  read -r user sys < <(tail -n 1 "$dir/$tool-$phase.time")
  literal=$(sed -n 's/^Literal data: \([0-9,]*\) bytes.*/\1/p' "$dir/$tool-$phase.out" | tr -d ,)
  awk -v OFS='\t' -v run="$run" -v phase="$phase" -v tool="$tool" -v t0="$t0" -v t1="$t1" \
    -v u="$user" -v s="$sys" -v s0="$s0" -v s1="$s1" -v up=$((up1 - up0)) -v down=$((down1 - down0)) \
    -v st=$((st1 - st0)) -v lit="${literal:-0}" 'BEGIN {
      w = t1 - t0
      printf "%s\t%s\t%s\t%.3f\t%.2f\t%d\t%d\t%d\t-\t%.2f\t%.2f\t%d\n", run, phase, tool, w,
        u + s + (s1 - s0), up, down, st, u + s, s1 - s0, lit }' >>"$RESULTS"
}

# step RUN PHASE DIR: every tool, in an order that alternates between runs.
step() {
  local run=$1 phase=$2 dir=$3 order=("${TOOLS[@]}") tool i
  if ((run % 2 == 0)); then
    order=()
    for ((i = ${#TOOLS[@]} - 1; i >= 0; i--)); do order+=("${TOOLS[i]}"); done
  fi
  for tool in "${order[@]}"; do
    if [[ $tool == ferry ]]; then
      step_ferry "$run" "$phase" "$dir"
    else
      step_rsync "$run" "$phase" "$tool" "$dir"
    fi
  done
  log "  $phase: $(awk -F'\t' -v r="$run" -v p="$phase" '$1 == r && $2 == p {
    printf "%s%s %.2f s %.1f MB", sep, $3, $4, ($6 + $7) / 1e6; sep = ", " }' "$RESULTS")"
}

# verify DIR: every copy against the source, after the last phase.
verify() {
  local dir=$1 run=$2 tool what
  for tool in "${TOOLS[@]}"; do
    what=$dir/$tool-dst
    if [[ $tool == ferry ]]; then
      what=$dir/restore
      "$FERRYCTL" restore --store "$dir/hub/tenants/$TENANT/store" --keyset "$KEYSET" "$LAST_SNAPSHOT" \
        --to "$what" >"$dir/restore.log" 2>&1 || die "ferryctl restore from the hub's store failed: $(last_lines "$dir/restore.log")"
    fi
    if ! diff -r -- "$SRC" "$what" >"$dir/diff-$tool.txt" 2>&1; then
      WRONG=1
      {
        echo "!!!"
        echo "!!! run $run: $tool's copy differs from the source ($(wc -l <"$dir/diff-$tool.txt") lines of diff -r, first ones below)"
        head -n 5 "$dir/diff-$tool.txt" | sed 's/^/!!!   /'
        echo "!!!"
      } >&2
      printf '%s\tverify\t%s\twrong\n' "$run" "$tool" >>"$RESULTS"
    fi
  done
}

run_once() {
  local run=$1 dir=$SCRATCH/run$1
  mkdir -p "$dir/src"
  SRC=$dir/src
  nft flush chain inet "$NFT_TABLE" out
  count_port ssh "$SSH_PORT"
  log "run $run/$RUNS: fresh hub and agent"
  start_ferry "$dir"
  log "run $run/$RUNS: generating the dataset ($(human_bytes "$SIZE_BYTES"), $FILES files)"
  "$GEN" mixed --out "$SRC" --size "$SIZE_BYTES" --files "$FILES" --seed "$MIXED_SEED" >"$dir/gen.out" ||
    die "ferry-gen-dataset mixed failed"
  DATASET_LINE=$(sed -e 's/ dir=[^ ]*//' -e 's/ seconds=[^ ]*//' "$dir/gen.out")
  sync
  step "$run" initial "$dir"
  "$GEN" mutate --dir "$SRC" --fraction "$MUTATE_FRACTION" --seed "$MUTATE_SEED" >"$dir/mutate.out" ||
    die "ferry-gen-dataset mutate failed"
  MUTATE_LINE=$(sed -e 's/ dir=[^ ]*//' -e 's/ seconds=[^ ]*//' "$dir/mutate.out")
  sync
  step "$run" change "$dir"
  step "$run" nochange "$dir"
  stop_ferry "$dir"
  verify "$dir" "$run"
  if ((KEEP)); then
    rm -rf -- "$dir/restore"
  else
    rm -rf -- "$dir"
  fi
}

# --- report ------------------------------------------------------------------

report() {
  local versions
  versions="$(rsync --version | awk 'NR == 1 { print "rsync " $3 }'), $(ssh -V 2>&1 | cut -d, -f1) (cipher ${SSH_CIPHER:-?}), $BIN_ID"
  awk -F'\t' -v tools="${TOOLS[*]}" -v runs="$RUNS" -v date="$(date -u +'%F %H:%M UTC')" \
    -v machine="$(machine_line), scratch on $(fs_line "$SCRATCH")" -v versions="$versions" \
    -v dataset="$DATASET_LINE" -v mutate="$MUTATE_LINE" -v load_start="$LOAD_START" -v ssh_connect="$SSH_CONNECT_S" \
    -v load_end="$(cut -d' ' -f1-3 /proc/loadavg)" \
    -v t_init="$TARGET_INITIAL" -v t_change="$TARGET_CHANGE" -v t_nochange="$TARGET_NOCHANGE" '
function median(key, col,    n, i, j, v, t) {
  n = 0
  for (i = 1; i <= cnt[key]; i++) if (V[key, i, col] != "-") v[++n] = V[key, i, col] + 0
  if (n == 0) return ""
  for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
  return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function med(phase, tool, col) { return median(phase SUBSEP tool, col) }
function mb(b) { return sprintf("%.2f", b / 1e6) }
function target(name, ok, detail) { printf "- %s %s: %s\n", (ok ? "PASS" : "FAIL"), name, detail }
$4 == "wrong" { wrong[$3] = 1; next }
{
  key = $2 SUBSEP $3; n = ++cnt[key]
  for (c = 4; c <= 12; c++) V[key, n, c] = $c
  # wire bytes both ways
  V[key, n, 13] = $6 + $7
  stall_us += $8; wall_s += $4
}
END {
  nt = split(tools, T, " ")
  name["ferry"] = "ferry"; name["rsync"] = "rsync"; name["rsync-z"] = "rsync -z"
  pn["initial"] = "initial copy"; pn["change"] = "after 1% change"; pn["nochange"] = "no change"
  P[1] = "initial"; P[2] = "change"; P[3] = "nochange"
  printf "## Ferry agent -> hub vs rsync over ssh, loopback: medians of %d run(s)\n\n", runs
  printf "- date: %s\n- machine: %s\n- tools: %s\n", date, machine, versions
  printf "- dataset: %s\n- 1%% change: %s\n", dataset, mutate
  if (wall_s > 0)
    printf "- contention: load average %s at start, %s at end; some task waited for a CPU during %.0f%% of the measured steps'"'"' wall time (PSI, all steps together)\n",
      load_start, load_end, 100 * stall_us / 1e6 / wall_s
  printf "- one ssh connection alone (`ssh HOST true`, median of 5 before the runs): %.2f s\n", ssh_connect
  printf "- bytes on the wire: nftables counters on the loopback output hook, by port (hub port; sshd port), both directions, IP headers included\n\n"
  line = "| phase |"; sep = "|---|"
  for (i = 1; i <= nt; i++) { line = line sprintf(" %s wall s | %s CPU s | %s wire MB |", name[T[i]], name[T[i]], name[T[i]]); sep = sep "---:|---:|---:|" }
  line = line " ferry vs rsync: time | wire bytes |"; sep = sep "---:|---:|"
  print line; print sep
  for (p = 1; p <= 3; p++) {
    ph = P[p]; line = "| " pn[ph] " |"
    for (i = 1; i <= nt; i++) {
      w = med(ph, T[i], 4)
      if (w == "") { line = line " n/a | n/a | n/a |"; continue }
      line = line sprintf(" %.2f | %.2f | %s |", w, med(ph, T[i], 5), mb(med(ph, T[i], 13)))
    }
    fw = med(ph, "ferry", 4); rw = med(ph, "rsync", 4); fb = med(ph, "ferry", 13); rb = med(ph, "rsync", 13)
    line = line sprintf(" %s | %s |", (fw != "" && rw > 0) ? sprintf("%.2fx", fw / rw) : "n/a",
                        (fb != "" && rb > 0) ? sprintf("%.2fx", fb / rb) : "n/a")
    print line
  }
  printf "\nwall = from the trigger until the copy is complete: for Ferry, `ferry-agent snapshot` until the agent'"'"'s status\n"
  printf "shows the snapshot committed at the hub (polled every 20 ms); for rsync, the rsync process. CPU = user + sys of\n"
  printf "every process involved (ferry-agent + ferry-hub + the snapshot client; rsync + ssh + sshd + the rsync server).\n"
  printf "wire = MB (10^6 bytes) both ways. ferry vs rsync: Ferry'"'"'s figure / plain rsync'"'"'s (< 1: Ferry is faster, sends less).\n\n"
  printf "Where it goes (medians):\n\n"
  printf "| phase | ferry capture s | ferry replicate s | agent CPU s | hub CPU s | new sealed MB | ferry up / down MB |"
  for (i = 1; i <= nt; i++) if (T[i] != "ferry") printf " %s client / server CPU s | %s literal MB | %s up / down MB |", name[T[i]], name[T[i]], name[T[i]]
  printf "\n|---|---:|---:|---:|---:|---:|---:|"
  for (i = 1; i <= nt; i++) if (T[i] != "ferry") printf "---:|---:|---:|"
  printf "\n"
  for (p = 1; p <= 3; p++) {
    ph = P[p]
    c = med(ph, "ferry", 9); w = med(ph, "ferry", 4)
    printf "| %s | %.2f | %.2f | %.2f | %.2f | %s | %s / %s |", pn[ph], c, w - c, med(ph, "ferry", 10), med(ph, "ferry", 11),
      mb(med(ph, "ferry", 12)), mb(med(ph, "ferry", 6)), mb(med(ph, "ferry", 7))
    for (i = 1; i <= nt; i++) if (T[i] != "ferry")
      printf " %.2f / %.2f | %s | %s / %s |", med(ph, T[i], 10), med(ph, T[i], 11), mb(med(ph, T[i], 12)), mb(med(ph, T[i], 6)), mb(med(ph, T[i], 7))
    printf "\n"
  }
  printf "\ncapture = until `ferry-agent snapshot` answers (the agent read, chunked, compressed and sealed into its outbox);\n"
  printf "replicate = the rest, until committed at the hub. up = towards the hub / sshd. rsync literal = bytes rsync sent as data.\n\n"
  printf "Targets:\n\n"
  fw = med("initial", "ferry", 4); rw = med("initial", "rsync", 4)
  target("initial copy: ferry time <= rsync time", !("ferry" in wrong) && fw <= t_init * rw,
         sprintf("ferry %.2f s, rsync %.2f s (%.2fx)", fw, rw, fw / rw))
  fw = med("change", "ferry", 4); rw = med("change", "rsync", 4)
  target("after 1% change: ferry time <= 0.5x rsync time", !("ferry" in wrong) && fw <= t_change * rw,
         sprintf("ferry %.2f s, rsync %.2f s (%.2fx)", fw, rw, fw / rw))
  fw = med("nochange", "ferry", 4); rw = med("nochange", "rsync", 4)
  target("no change: ferry time <= 0.5x rsync time", !("ferry" in wrong) && fw <= t_nochange * rw,
         sprintf("ferry %.2f s, rsync %.2f s (%.2fx)", fw, rw, fw / rw))
  fb = med("change", "ferry", 13); rb = med("change", "rsync", 13)
  target("after 1% change: ferry bytes on the wire <= rsync", !("ferry" in wrong) && fb <= rb,
         sprintf("ferry %s MB, rsync %s MB (%.2fx)", mb(fb), mb(rb), fb / rb))
  for (t in wrong) printf "\n!!! %s: a copy differed from its source; its figures are not results\n", t
}' "$RESULTS"
}

# --- main --------------------------------------------------------------------

main() {
  parse_args "$@"
  check_tools
  trap cleanup EXIT
  trap on_signal INT TERM
  setup_scratch
  write_helper
  setup_counters
  start_sshd
  make_keys
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  log "scratch $SCRATCH; tools: ${TOOLS[*]}; runs: $RUNS; dataset $(human_bytes "$SIZE_BYTES") in $FILES files; sshd on 127.0.0.1:$SSH_PORT"
  local run
  for ((run = 1; run <= RUNS; run++)); do
    run_once "$run"
  done
  report
  if ((WRONG)); then
    log "FAILED: a copy differed from its source (see above)"
    exit 1
  fi
}

main "$@"

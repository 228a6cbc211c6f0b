#!/usr/bin/env bash
# compare-peers.sh: Ferry against restic and borg, end to end, on the same
# machine in the same run (issue 2, "Benchmarks"). See bench/README.md.
#
# For a mixed dataset (~1 GiB, ~5,000 files) and a small-file dataset (100,000
# files) and for each tool: initial snapshot, no-change snapshot, snapshot
# after the 1% change (mixed only), restore of the latest snapshot into an
# empty folder, checked against the source. Every step is measured with GNU
# time (wall, user+sys CPU, peak RSS) and du of the repository; each run starts
# from a fresh repository, a fresh cache and a freshly generated dataset; the
# table shows medians over --runs runs, then PASS/FAIL per target.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
readonly ROOT
readonly ALL_TOOLS=(ferry restic borg)
readonly MIXED_SEED=1 SMALL_SEED=2 MUTATE_SEED=3
readonly MUTATE_FRACTION=0.01
readonly PASSPHRASE="compare-peers benchmark passphrase"

usage() {
  cat <<'EOF'
usage: bench/compare-peers.sh [options]

Runs Ferry, restic and borg on the same datasets and prints one markdown table
of medians (wall time, CPU time, peak RSS, bytes stored, Ferry's ratios to each
peer), then PASS/FAIL for each target of issue 2.

  --size SIZE       mixed dataset size (default 1GiB; B, KiB, MiB, GiB suffixes)
  --files N         files in the mixed dataset (default 5000)
  --small-files N   files in the small-file dataset (default 100000)
  --runs N          runs per measurement; medians are reported (default 3)
  --quick           smoke test: 64 MiB / 5,000 files, 10,000 small files, 1 run
                    (explicit --size/--files/--small-files/--runs still win)
  --only TOOL       run one tool: ferry, restic or borg (for debugging)
  --cold            drop the page cache before every measured step (root only;
                    sync; echo 3 > /proc/sys/vm/drop_caches). Default: warm cache
  --rss-scaling     also snapshot a 4x-size mixed dataset with Ferry and compare
                    its peak RSS with the 1x one (slow; off by default)
  --workdir DIR     where datasets and repositories go (default: a new temporary
                    directory under /var/tmp); must be absent or empty; removed
                    at the end unless --keep
  --restore-fs FS   where restores write: "ext4" (default when root: a fresh
                    ext4 with mkfs.ext4's defaults, journal included, loop-
                    mounted in the work directory, the same for every tool) or
                    "scratch" (the work directory's own filesystem; a timed
                    restore then waits until the last large deletion is 61 s
                    old, see bench/README.md)
  --keep            keep the work directory (datasets, repositories, logs)
  --json FILE       also write all runs, medians and targets as JSON
  -h, --help        this text

Environment: FERRY_BIN (default build/bin, relative to the repository) holds
ferryctl and ferry-gen-dataset; both are built there with cmake and ninja when
missing. Exit status: 0 when every step ran and every restore matched its source
(targets may still FAIL), 1 on a wrong restore or a failing peer, 2 on usage.
EOF
}

log() { printf '[compare-peers %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- options -----------------------------------------------------------------

LOAD_START=""
SIZE="" FILES="" SMALL_FILES="" RUNS="" ONLY="" WORKDIR="" JSON_OUT="" RESTORE_FS=""
QUICK=0 COLD=0 KEEP=0 RSS_SCALING=0

parse_args() {
  while (($#)); do
    case $1 in
      --size | --files | --small-files | --runs | --only | --workdir | --json | --restore-fs)
        (($# >= 2)) || { usage >&2; exit 2; }
        case $1 in
          --size) SIZE=$2 ;;
          --files) FILES=$2 ;;
          --small-files) SMALL_FILES=$2 ;;
          --runs) RUNS=$2 ;;
          --only) ONLY=$2 ;;
          --workdir) WORKDIR=$2 ;;
          --json) JSON_OUT=$2 ;;
          --restore-fs) RESTORE_FS=$2 ;;
        esac
        shift 2
        ;;
      --quick) QUICK=1 && shift ;;
      --cold) COLD=1 && shift ;;
      --keep) KEEP=1 && shift ;;
      --rss-scaling) RSS_SCALING=1 && shift ;;
      -h | --help) usage && exit 0 ;;
      *) echo "compare-peers.sh: unknown argument '$1'" >&2 && usage >&2 && exit 2 ;;
    esac
  done
  if ((QUICK)); then
    : "${SIZE:=64MiB}" "${FILES:=5000}" "${SMALL_FILES:=10000}" "${RUNS:=1}"
  fi
  : "${SIZE:=1GiB}" "${FILES:=5000}" "${SMALL_FILES:=100000}" "${RUNS:=3}"
  if [[ -z $RESTORE_FS ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v mkfs.ext4 >/dev/null && command -v losetup >/dev/null; then
      RESTORE_FS=ext4
    else
      RESTORE_FS=scratch
    fi
  fi
  [[ $RESTORE_FS == ext4 || $RESTORE_FS == scratch ]] ||
    { echo "--restore-fs wants ext4 or scratch" >&2; exit 2; }
  [[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "--runs wants a positive integer" >&2; exit 2; }
  [[ $FILES =~ ^[1-9][0-9]*$ ]] || { echo "--files wants a positive integer" >&2; exit 2; }
  [[ $SMALL_FILES =~ ^[1-9][0-9]*$ ]] || { echo "--small-files wants a positive integer" >&2; exit 2; }
  SIZE_BYTES=$(size_to_bytes "$SIZE") || { echo "bad --size '$SIZE'" >&2; exit 2; }
  TOOLS=("${ALL_TOOLS[@]}")
  if [[ -n $ONLY ]]; then
    case $ONLY in
      ferry | restic | borg) TOOLS=("$ONLY") ;;
      *) echo "--only wants ferry, restic or borg" >&2 && exit 2 ;;
    esac
  fi
}

# --- environment -------------------------------------------------------------

ensure_peer_tools() {
  local missing=() tool
  for tool in "${TOOLS[@]}"; do
    case $tool in
      restic) command -v restic >/dev/null || missing+=(restic) ;;
      borg) command -v borg >/dev/null || missing+=(borgbackup) ;;
    esac
  done
  [[ -x /usr/bin/time ]] || missing+=(time)
  if ((${#missing[@]})); then
    log "installing missing ${missing[*]} (scripts/deps, extra group bench)"
    FERRY_DEPS_EXTRA=bench "$ROOT/scripts/deps" || die "scripts/deps failed"
  fi
  [[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is required"
}

# Builds ferry-gen-dataset and ferryctl in the build tree that owns FERRY_BIN
# when either is missing. A ferryctl that does not build only disables Ferry.
ensure_ferry_binaries() {
  BIN_DIR=${FERRY_BIN:-build/bin}
  [[ $BIN_DIR == /* ]] || BIN_DIR=$ROOT/$BIN_DIR
  GEN=$BIN_DIR/ferry-gen-dataset
  FERRYCTL=$BIN_DIR/ferryctl
  if [[ -x $GEN && -x $FERRYCTL ]]; then
    return 0
  fi
  local build_dir
  build_dir=$(dirname "$BIN_DIR")
  log "building ferry-gen-dataset and ferryctl in $build_dir (log: $LOG_DIR/build.log)"
  cmake -S "$ROOT" -B "$build_dir" -G Ninja >>"$LOG_DIR/build.log" 2>&1 ||
    die "cmake failed: $(tail -n 20 "$LOG_DIR/build.log")"
  ninja -C "$build_dir" -j "$(nproc)" ferry-gen-dataset >>"$LOG_DIR/build.log" 2>&1 ||
    die "ferry-gen-dataset does not build: $(tail -n 20 "$LOG_DIR/build.log")"
  ninja -C "$build_dir" -j "$(nproc)" ferryctl >>"$LOG_DIR/build.log" 2>&1 ||
    log "ferryctl does not build; the Ferry column will be n/a"
}

setup_workdir() {
  if [[ -z $WORKDIR ]]; then
    WORKDIR=$(mktemp -d /var/tmp/ferry-compare.XXXXXX)
  else
    mkdir -p "$WORKDIR"
    WORKDIR=$(cd "$WORKDIR" && pwd)
    [[ -z $(ls -A "$WORKDIR") ]] || die "--workdir $WORKDIR is not empty"
  fi
  DATA_DIR=$WORKDIR/data
  RUNS_DIR=$WORKDIR/runs
  LOG_DIR=$WORKDIR/logs
  KEY_DIR=$WORKDIR/keys
  RESULTS=$WORKDIR/results.tsv
  DATASETS=$WORKDIR/datasets.tsv
  FAILURES=$WORKDIR/failures.tsv
  RESTORE_DIR=$RUNS_DIR/restore
  mkdir -p "$DATA_DIR" "$RUNS_DIR" "$LOG_DIR" "$KEY_DIR" "$RESTORE_DIR"
  : >"$RESULTS"
  : >"$DATASETS"
  : >"$FAILURES"
  trap cleanup EXIT
}

cleanup() {
  local rc=$?
  if ((RESTORE_MOUNTED)); then
    umount "$RESTORE_DIR" || log "warning: could not unmount $RESTORE_DIR"
  fi
  if ((KEEP)); then
    log "work directory kept: $WORKDIR"
  elif [[ -n ${WORKDIR:-} && -d $WORKDIR ]]; then
    rm -rf -- "$WORKDIR"
  fi
  exit "$rc"
}

check_cold_cache() {
  ((COLD)) || return 0
  [[ $(id -u) -eq 0 && -w /proc/sys/vm/drop_caches ]] ||
    die "--cold needs root and a writable /proc/sys/vm/drop_caches"
}

# Before every measured step: write back dirty pages (so one tool's writeback
# is not charged to the next) and, with --cold, drop the page cache.
settle_cache() {
  sync
  if ((COLD)); then
    echo 3 >/proc/sys/vm/drop_caches
  fi
}

# --- measuring ---------------------------------------------------------------

# run_measured OUT ERR CMD...: runs CMD under GNU time, stdout to OUT and
# stderr to ERR; sets M_WALL, M_CPU (user+sys, s), M_RSS (KiB) and M_STALL
# (% of the wall time some task waited for a CPU); returns CMD's status.
run_measured() {
  local out=$1 err=$2
  shift 2
  settle_cache
  local timing=$WORKDIR/time.$$
  local rc=0 stall0 stall1
  stall0=$(cpu_stall_us)
  /usr/bin/time -f '%e %U %S %M' -o "$timing" -- "$@" >"$out" 2>"$err" || rc=$?
  stall1=$(cpu_stall_us)
  local user sys
  read -r M_WALL user sys M_RSS < <(tail -n 1 "$timing")
  M_CPU=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  M_STALL=$(awk -v a="${stall0:-0}" -v b="${stall1:-0}" -v w="$M_WALL" \
    'BEGIN { p = (w > 0 && b >= a) ? (b - a) / 1e4 / w : 0; printf "%.0f", (p > 100 ? 100 : p) }')
  rm -f "$timing"
  return "$rc"
}

store_bytes() {
  if [[ -d $1 ]]; then
    du -sb -- "$1" | cut -f1
  else
    echo 0
  fi
}

# record DATASET OP TOOL RUN STATUS [WALL CPU RSS STORED ADDED STALL]
record() {
  local ds=$1 op=$2 tool=$3 run=$4 status=$5
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ds" "$op" "$tool" "$run" "$status" \
    "${6:--}" "${7:--}" "${8:--}" "${9:--}" "${10:--}" "${11:--}" >>"$RESULTS"
}

# fail_step DATASET OP TOOL RUN REASON: records n/a, disables TOOL for the rest
# of this run, and remembers why.
fail_step() {
  local ds=$1 op=$2 tool=$3 run=$4 reason=$5
  reason=$(printf '%s' "$reason" | tr '\t\n' '  ' | cut -c1-300)
  record "$ds" "$op" "$tool" "$run" na
  printf '%s\t%s\t%s\t%s\t%s\n' "$ds" "$op" "$tool" "$run" "$reason" >>"$FAILURES"
  if [[ ${TOOL_OK[$tool]} == 1 ]]; then
    log "$tool: $op on $ds (run $run) failed: $reason"
  fi
  TOOL_OK[$tool]=0
  if [[ $tool != ferry ]]; then
    PEER_FAILED=1
  fi
}

# --- tools -------------------------------------------------------------------
# Each tool has <tool>_setup RUN_DIR (fresh repository and cache; not measured;
# on failure it sets SETUP_WHY),
# <tool>_snapshot LOGBASE SRC (measured), <tool>_restore LOGBASE TARGET
# (measured) and <tool>_restored_root TARGET SRC (where the source's copy is).
# They run in a condition (errexit is off there), so every step checks itself.

export RESTIC_PASSWORD=$PASSPHRASE
export BORG_PASSPHRASE=$PASSPHRASE
export FERRY_PASSPHRASE=$PASSPHRASE
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_DISPLAY_PASSPHRASE=no
export BORG_CHECK_I_KNOW_WHAT_I_AM_DOING=NO
export BORG_DELETE_I_KNOW_WHAT_I_AM_DOING=NO

restic_setup() {
  RESTIC_REPO=$1/restic/repo
  RESTIC_CACHE=$1/restic/cache
  mkdir -p "$RESTIC_CACHE" || return 1
  restic --repo "$RESTIC_REPO" --cache-dir "$RESTIC_CACHE" init >"$1/restic/init.log" 2>&1 || {
    SETUP_WHY="restic init failed: $(last_lines "$1/restic/init.log")"
    return 1
  }
}
restic_snapshot() {
  run_measured "$1.out" "$1.err" restic --repo "$RESTIC_REPO" --cache-dir "$RESTIC_CACHE" \
    backup "$2"
}
restic_restore() {
  run_measured "$1.out" "$1.err" restic --repo "$RESTIC_REPO" --cache-dir "$RESTIC_CACHE" \
    restore latest --target "$2"
}
restic_restored_root() { echo "$1$2"; }
restic_store() { echo "$RESTIC_REPO"; }

borg_setup() {
  BORG_REPO_DIR=$1/borg/repo
  export BORG_BASE_DIR=$1/borg/base
  export BORG_CACHE_DIR=$BORG_BASE_DIR/cache
  export BORG_CONFIG_DIR=$BORG_BASE_DIR/config
  export BORG_SECURITY_DIR=$BORG_BASE_DIR/security
  export BORG_KEYS_DIR=$BORG_BASE_DIR/keys
  BORG_ARCHIVES=0
  mkdir -p "$BORG_CACHE_DIR" "$BORG_CONFIG_DIR" "$BORG_SECURITY_DIR" "$BORG_KEYS_DIR" || return 1
  borg init --encryption=repokey "$BORG_REPO_DIR" >"$1/borg/init.log" 2>&1 || {
    SETUP_WHY="borg init failed: $(last_lines "$1/borg/init.log")"
    return 1
  }
}
borg_snapshot() {
  BORG_ARCHIVES=$((BORG_ARCHIVES + 1))
  run_measured "$1.out" "$1.err" borg create --compression lz4 \
    --chunker-params buzhash,14,20,16,4095 "$BORG_REPO_DIR::snap-$BORG_ARCHIVES" "$2"
}
borg_restore() {
  run_measured "$1.out" "$1.err" env -C "$2" borg extract "$BORG_REPO_DIR::snap-$BORG_ARCHIVES"
}
borg_restored_root() { echo "$1/${2#/}"; }
borg_store() { echo "$BORG_REPO_DIR"; }

# Ferry: one tenant keyset for the whole script; snapshots with the agent
# (write-only) key file like an edge device, restores with the full keyset.
FERRY_READY=0
FERRY_REASON=""
ferry_keys() {
  local keys_log=$LOG_DIR/ferry-keys.log
  if [[ ! -x $FERRYCTL ]]; then
    FERRY_REASON="no ferryctl at $FERRYCTL"
    return 0
  fi
  FERRY_KEYSET=$KEY_DIR/tenant.keyset
  FERRY_AGENT=$KEY_DIR/agent.key
  if ! "$FERRYCTL" keys init --out "$FERRY_KEYSET" >"$keys_log" 2>&1 || [[ ! -s $FERRY_KEYSET ]]; then
    FERRY_REASON="ferryctl keys init did not write a keyset: $(last_lines "$keys_log")"
    return 0
  fi
  if ! "$FERRYCTL" keys export-agent --keyset "$FERRY_KEYSET" --out "$FERRY_AGENT" >>"$keys_log" 2>&1 ||
    [[ ! -s $FERRY_AGENT ]]; then
    FERRY_REASON="ferryctl keys export-agent did not write an agent key: $(last_lines "$keys_log")"
    return 0
  fi
  FERRY_READY=1
}
ferry_setup() {
  if ((!FERRY_READY)); then
    SETUP_WHY=$FERRY_REASON
    return 1
  fi
  FERRY_STORE=$1/ferry/store
  FERRY_CACHE=$1/ferry/cache
  mkdir -p "$FERRY_CACHE" || return 1
}
ferry_snapshot() {
  run_measured "$1.out" "$1.err" env XDG_CACHE_HOME="$FERRY_CACHE" "$FERRYCTL" snapshot create \
    --store "$FERRY_STORE" --keyset "$FERRY_AGENT" --label bench=compare-peers "$2" || return 1
  local id
  id=$(awk 'NF { last = $0 } END { print last }' "$1.out")
  if [[ -z $id ]]; then
    echo "ferryctl snapshot create printed no snapshot id" >>"$1.err"
    return 1
  fi
}
ferry_restore() {
  run_measured "$1.out" "$1.err" env XDG_CACHE_HOME="$FERRY_CACHE" "$FERRYCTL" restore \
    --store "$FERRY_STORE" --keyset "$FERRY_KEYSET" latest --to "$2"
}
ferry_restored_root() { echo "$1"; }
ferry_store() { echo "$FERRY_STORE"; }

# --- steps -------------------------------------------------------------------

declare -A TOOL_OK=() LAST_STORED=()
PEER_FAILED=0
WRONG_RESTORE=0

# snapshot_step DATASET OP RUN SRC: one snapshot per tool, in turn.
snapshot_step() {
  local ds=$1 op=$2 run=$3 src=$4 tool
  for tool in "${TOOLS[@]}"; do
    local base=$LOG_DIR/$ds.run$run.$tool.$op
    if [[ ${TOOL_OK[$tool]} != 1 ]]; then
      record "$ds" "$op" "$tool" "$run" na
      continue
    fi
    log "$ds run $run: $tool $op snapshot"
    if ! "${tool}_snapshot" "$base" "$src"; then
      fail_step "$ds" "$op" "$tool" "$run" "snapshot failed: $(last_lines "$base.err")"
      continue
    fi
    local stored added
    stored=$(store_bytes "$("${tool}_store")")
    added=$((stored - LAST_STORED[$tool]))
    LAST_STORED[$tool]=$stored
    record "$ds" "$op" "$tool" "$run" ok "$M_WALL" "$M_CPU" "$M_RSS" "$stored" "$added" "$M_STALL"
  done
}

# Where restores write (--restore-fs). On ext4 *without a journal* (this
# machine's root filesystem) the kernel will not reuse an inode freed in the
# last 60 seconds, 360 if its inode-table block is still dirty (ialloc.c,
# recently_deleted, checked only without a journal), and skipping 100,000 of
# them made creating files up to 4.5x slower for whichever tool restored after
# the previous tool's tree was deleted. "ext4" restores into a fresh ext4 made
# with mkfs.ext4's defaults (with a journal, like most hosts), loop-mounted
# here for the whole script: no tool pays for another's deletions. "scratch"
# restores into the work directory's filesystem, and a timed restore starts
# only once the newest large deletion is 61 seconds old and synced.
RESTORE_MOUNTED=0
RESTORE_FS_DESC=""
setup_restore_fs() {
  if [[ $RESTORE_FS == scratch ]]; then
    RESTORE_FS_DESC="the work directory's filesystem ($(findmnt -n -o FSTYPE --target "$RESTORE_DIR" 2>/dev/null || echo unknown))"
    return 0
  fi
  [[ $(id -u) -eq 0 ]] || die "--restore-fs ext4 needs root (mount); use --restore-fs scratch"
  # Room for every tool's restored tree at once, plus slack: 3x (mixed + small).
  local small_guess=$((SMALL_FILES * 16384)) bytes
  bytes=$((3 * (SIZE_BYTES + small_guess) + (2 << 30)))
  truncate -s "$bytes" "$WORKDIR/restore.img"
  mkfs.ext4 -q -F "$WORKDIR/restore.img" >"$LOG_DIR/mkfs.log" 2>&1 ||
    die "mkfs.ext4 failed: $(last_lines "$LOG_DIR/mkfs.log")"
  mount -o loop "$WORKDIR/restore.img" "$RESTORE_DIR" >"$LOG_DIR/mount.log" 2>&1 ||
    die "mounting the restore filesystem failed: $(last_lines "$LOG_DIR/mount.log")"
  RESTORE_MOUNTED=1
  RESTORE_FS_DESC="a fresh ext4 (mkfs.ext4 defaults, $((bytes >> 30)) GiB image on the work directory's filesystem, loop-mounted)"
}
LAST_BULK_DELETE=0
bulk_delete() {
  rm -rf -- "$@"
  LAST_BULK_DELETE=$(date +%s)
}
settle_after_deletes() {
  [[ $RESTORE_FS == scratch ]] || return 0
  sync
  local wait=$((LAST_BULK_DELETE + 61 - $(date +%s)))
  if ((wait > 0)); then
    log "waiting ${wait}s for ext4 to stop avoiding recently freed inodes"
    sleep "$wait"
  fi
}

# restore_step DATASET RUN SRC: restore "latest" into an empty folder, then
# compare with the source; a difference is a loud failure, not a result.
# Restored trees are deleted only after every tool has restored.
restore_step() {
  local ds=$1 run=$2 src=$3 tool
  for tool in "${TOOLS[@]}"; do
    local base=$LOG_DIR/$ds.run$run.$tool.restore
    local target=$RESTORE_DIR/$tool
    if [[ ${TOOL_OK[$tool]} != 1 ]]; then
      record "$ds" restore "$tool" "$run" na
      continue
    fi
    bulk_delete "$target"
    mkdir -p -- "$target"
    settle_after_deletes
    log "$ds run $run: $tool restore"
    if ! "${tool}_restore" "$base" "$target"; then
      fail_step "$ds" restore "$tool" "$run" "restore failed: $(last_lines "$base.err")"
      continue
    fi
    local wall=$M_WALL cpu=$M_CPU rss=$M_RSS stall=$M_STALL root
    root=$("${tool}_restored_root" "$target" "$src")
    if diff -r --no-dereference -q -- "$src" "$root" >"$base.diff" 2>&1; then
      record "$ds" restore "$tool" "$run" ok "$wall" "$cpu" "$rss" - - "$stall"
    else
      WRONG_RESTORE=1
      record "$ds" restore "$tool" "$run" wrong "$wall" "$cpu" "$rss" - - "$stall"
      printf '%s\t%s\t%s\t%s\t%s\n' "$ds" restore "$tool" "$run" \
        "RESTORED TREE DIFFERS FROM THE SOURCE ($(wc -l <"$base.diff") differences)" >>"$FAILURES"
      {
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        echo "!!! $tool restored $ds (run $run) WRONG: $root differs from $src"
        head -n 20 "$base.diff" | sed 's/^/!!!   /'
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
      } >&2
    fi
  done
  for tool in "${TOOLS[@]}"; do bulk_delete "$RESTORE_DIR/$tool"; done
}

# generate DATASET_NAME GEN_ARGS...: a fresh copy of the dataset in DATA_DIR.
generate() {
  local name=$1
  shift
  local dir=$DATA_DIR/$name
  bulk_delete "$dir"
  local summary
  summary=$("$GEN" "$@" --out "$dir") || die "ferry-gen-dataset $* failed"
  summary=$(printf '%s' "$summary" | sed -E 's/^[a-z]+: //; s/(^| )(dir|seconds)=[^ ]*//g; s/^ //')
  if ! awk -F'\t' -v n="$name" '$1 == n { found = 1 } END { exit !found }' "$DATASETS"; then
    printf '%s\t%s\n' "$name" "$summary" >>"$DATASETS"
  fi
  sync
}

# start_run RUN: fresh repositories and caches for every tool.
start_run() {
  local run_dir=$RUNS_DIR/run tool
  bulk_delete "$run_dir"
  for tool in "${TOOLS[@]}"; do
    mkdir -p "$run_dir/$tool"
    TOOL_OK[$tool]=1
    LAST_STORED[$tool]=0
    SETUP_WHY="setup failed"
    if ! "${tool}_setup" "$run_dir" >>"$LOG_DIR/setup.log" 2>&1; then
      TOOL_OK[$tool]=0
      SETUP_FAILURE[$tool]=$SETUP_WHY
    fi
  done
}

declare -A SETUP_FAILURE=()
SETUP_WHY=""

# A tool whose setup failed gets n/a for the run's steps, with the reason.
note_setup_failures() {
  local ds=$1 run=$2 tool
  for tool in "${!SETUP_FAILURE[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\n' "$ds" setup "$tool" "$run" "${SETUP_FAILURE[$tool]}" >>"$FAILURES"
    [[ $tool == ferry ]] || PEER_FAILED=1
    log "$tool n/a on $ds run $run: ${SETUP_FAILURE[$tool]}"
  done
  SETUP_FAILURE=()
}

# finish_run NAME RUN: drop the run's repositories (or keep them with --keep).
finish_run() {
  if ((KEEP)); then
    mv -- "$RUNS_DIR/run" "$RUNS_DIR/$1-run$2"
  else
    rm -rf -- "$RUNS_DIR/run"
  fi
}

# run_dataset NAME MUTATE(0|1) GEN_ARGS...
run_dataset() {
  local name=$1 mutate=$2
  shift 2
  local run src=$DATA_DIR/$name
  for ((run = 1; run <= RUNS; run++)); do
    log "$name run $run/$RUNS: generating dataset"
    generate "$name" "$@"
    start_run
    note_setup_failures "$name" "$run"
    snapshot_step "$name" initial "$run" "$src"
    snapshot_step "$name" nochange "$run" "$src"
    if ((mutate)); then
      "$GEN" mutate --dir "$src" --fraction "$MUTATE_FRACTION" --seed "$MUTATE_SEED" \
        >"$LOG_DIR/$name.run$run.mutate.log" || die "ferry-gen-dataset mutate failed"
      sync
      snapshot_step "$name" change "$run" "$src"
    fi
    restore_step "$name" "$run" "$src"
    finish_run "$name" "$run"
  done
  rm -rf -- "$src"
}

# Ferry only: peak RSS of the initial snapshot of a 4x-size mixed dataset.
run_rss_scaling() {
  local name=mixed-4x run src=$DATA_DIR/mixed-4x
  local bytes
  bytes=$(awk -v b="$SIZE_BYTES" 'BEGIN { printf "%.0f", 4 * b }')
  for ((run = 1; run <= RUNS; run++)); do
    log "$name run $run/$RUNS: generating dataset ($(human_bytes "$bytes"))"
    generate "$name" mixed --size "$bytes" --files "$FILES" --seed "$MIXED_SEED"
    local saved=("${TOOLS[@]}")
    TOOLS=(ferry)
    start_run
    note_setup_failures "$name" "$run"
    snapshot_step "$name" initial "$run" "$src"
    TOOLS=("${saved[@]}")
    finish_run "$name" "$run"
  done
  rm -rf -- "$src"
}

# --- report ------------------------------------------------------------------

tool_versions() {
  local tool sep=""
  for tool in "${TOOLS[@]}"; do
    printf '%s' "$sep"
    sep=" "
    case $tool in
      ferry) printf 'ferry=git-%s(work tree)' "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" ;;
      restic) printf 'restic=%s' "$(restic version | awk '{ print $2 }')" ;;
      borg) printf 'borg=%s' "$(borg --version | awk '{ print $2 }')" ;;
    esac
  done
}

machine_line() {
  local cpu
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  printf '%s, %s cores, %s RAM, Linux %s, work dir on %s' "${cpu:-unknown CPU}" "$(nproc)" \
    "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)" "$(uname -r)" \
    "$(df -T -- "$WORKDIR" | awk 'NR == 2 { print $2 }')"
}

report() {
  local cache="warm page cache"
  ((COLD)) && cache="cold page cache (dropped before every step)"
  cache="$cache; restores write to $RESTORE_FS_DESC"
  awk -F'\t' \
    -v tools="${TOOLS[*]}" -v runs="$RUNS" -v cache="$cache" -v json="$JSON_OUT" \
    -v machine="$(machine_line)" -v versions="$(tool_versions)" -v date="$(date -u +%FT%TZ)" \
    -v rss_scaling="$RSS_SCALING" -v datasets_file="$DATASETS" -v failures_file="$FAILURES" \
    -v load_start="$LOAD_START" -v load_end="$(cut -d' ' -f1-3 /proc/loadavg)" \
    -f "$WORKDIR/report.awk" "$DATASETS" "$FAILURES" "$RESULTS"
}

write_report_awk() {
  cat >"$WORKDIR/report.awk" <<'AWK'
function median(key, arr,    n, i, j, v, t, m) {
  n = 0
  for (i = 1; i <= cnt[key]; i++) if ((key, i) in arr && arr[key, i] != "-") v[++n] = arr[key, i] + 0
  if (n == 0) return ""
  for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
  m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  return m
}
function med(ds, op, tool, what,    key) {
  key = ds SUBSEP op SUBSEP tool
  if (!(key in cnt) || cnt[key] == 0) return ""
  if (what == "wall") return median(key, W)
  if (what == "cpu") return median(key, C)
  if (what == "rss") return median(key, R)
  if (what == "stored") return median(key, S)
  if (what == "added") return median(key, A)
}
function fmt(v, f) { return v == "" ? "n/a" : sprintf(f, v) }
function ratio(num, den) { return (num == "" || den == "" || den + 0 == 0) ? "" : num / den }
# Bytes that matter for a row: the whole store after the initial snapshot,
# what a later snapshot added.
function row_bytes(ds, op, tool) {
  if (op == "initial") return med(ds, op, tool, "stored")
  if (op == "restore") return ""
  return med(ds, op, tool, "added")
}
function jstr(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); gsub(/\t/, " ", s); return "\"" s "\"" }
function jnum(v) { return v == "" ? "null" : v + 0 }
function target(name, status, detail) {
  ntargets++
  tname[ntargets] = name; tstatus[ntargets] = status; tdetail[ntargets] = detail
}
# check_ratio NAME DS OP PEER MIN: peer wall / ferry wall >= MIN.
function check_speed(name, ds, op, peer, min,    f, p, r) {
  if (!(peer in has_tool)) return
  f = med(ds, op, "ferry", "wall"); p = med(ds, op, peer, "wall")
  if (!(ds in ds_seen)) return
  r = ratio(p, f)
  if (wrong[ds, op, "ferry"]) target(name, "FAIL", "Ferry's restore was WRONG")
  else if (r == "") target(name, "n/a", "no " (f == "" ? "Ferry" : peer) " figure")
  else target(name, r >= min ? "PASS" : "FAIL",
              sprintf("%s/ferry time = %.2fx (ferry %.2f s, %s %.2f s; need >= %gx)", peer, r, f, peer, p, min))
}
BEGIN {
  ntools = split(tools, T, " ")
  for (i = 1; i <= ntools; i++) has_tool[T[i]] = 1
  opname["initial"] = "initial snapshot"; opname["nochange"] = "no-change snapshot"
  opname["change"] = "snapshot after 1% change"; opname["restore"] = "restore latest"
}
FILENAME == datasets_file { ndesc++; dsname[ndesc] = $1; dsdesc[$1] = $2; next }
FILENAME == failures_file {
  fkey = $3 ": " $5
  if (!(fkey in fseen)) { fseen[fkey] = 1; nfail++; fail[nfail] = fkey; fail_tool[nfail] = $3; fail_ds[nfail] = $1; fail_op[nfail] = $2 }
  next
}
{
  ds = $1; op = $2; tool = $3; key = ds SUBSEP op SUBSEP tool
  ds_seen[ds] = 1
  if (!((ds, op) in rowseen)) { rowseen[ds, op] = 1; nrows++; row_ds[nrows] = ds; row_op[nrows] = op }
  nrec++; rec[nrec] = $0
  if ($5 == "wrong") wrong[ds, op, tool] = 1
  if ($5 == "ok" || $5 == "wrong") {
    n = ++cnt[key]; W[key, n] = $6; C[key, n] = $7; R[key, n] = $8; S[key, n] = $9; A[key, n] = $10
    if ($11 != "" && $11 != "-") { nstall++; stall[nstall] = $11 + 0 }
  } else if (!(key in cnt)) cnt[key] = 0
}
END {
  printf "## Ferry vs restic vs borg: medians of %d run(s), %s\n\n", runs, cache
  printf "- date: %s\n- machine: %s\n- tools: %s\n", date, machine, versions
  if (nstall > 0) {
    for (i = 2; i <= nstall; i++) { t = stall[i]; for (j = i - 1; j >= 1 && stall[j] > t; j--) stall[j + 1] = stall[j]; stall[j + 1] = t }
    printf "- contention: load average %s at start, %s at end; some task waited for a CPU during a median %d%% (max %d%%) of each measured step's wall time (PSI)\n",
      load_start, load_end, (nstall % 2) ? stall[(nstall + 1) / 2] : (stall[nstall / 2] + stall[nstall / 2 + 1]) / 2, stall[nstall]
  }
  for (i = 1; i <= ndesc; i++) printf "- dataset %s: %s\n", dsname[i], dsdesc[dsname[i]]
  printf "\n"
  # Header.
  line = "| dataset | operation |"; sep = "|---|---|"
  for (i = 1; i <= ntools; i++) {
    line = line sprintf(" %s wall s | %s CPU s | %s RSS MiB | %s stored MB |", T[i], T[i], T[i], T[i])
    sep = sep "---:|---:|---:|---:|"
  }
  if ("ferry" in has_tool) for (i = 1; i <= ntools; i++) if (T[i] != "ferry") {
    line = line sprintf(" ferry vs %s: speed | bytes | RSS |", T[i]); sep = sep "---:|---:|---:|"
  }
  print line; print sep
  for (r = 1; r <= nrows; r++) {
    ds = row_ds[r]; op = row_op[r]
    line = sprintf("| %s | %s |", ds, opname[op])
    for (i = 1; i <= ntools; i++) {
      t = T[i]
      if (wrong[ds, op, t]) { line = line " WRONG | WRONG | WRONG | — |"; continue }
      stored = "—"
      if (op != "restore") {
        stored = fmt(med(ds, op, t, "stored") / 1e6, "%.1f")
        if (med(ds, op, t, "stored") == "") stored = "n/a"
        else if (op != "initial") stored = stored sprintf(" (+%.1f)", med(ds, op, t, "added") / 1e6)
      }
      rss = med(ds, op, t, "rss")
      line = line sprintf(" %s | %s | %s | %s |", fmt(med(ds, op, t, "wall"), "%.2f"),
                          fmt(med(ds, op, t, "cpu"), "%.2f"), rss == "" ? "n/a" : sprintf("%.1f", rss / 1024), stored)
    }
    if ("ferry" in has_tool) for (i = 1; i <= ntools; i++) if (T[i] != "ferry") {
      p = T[i]
      sp = ratio(med(ds, op, p, "wall"), med(ds, op, "ferry", "wall"))
      by = (op == "restore") ? "—" : fmt(ratio(row_bytes(ds, op, "ferry"), row_bytes(ds, op, p)), "%.2fx")
      rs = ratio(med(ds, op, "ferry", "rss"), med(ds, op, p, "rss"))
      line = line sprintf(" %s | %s | %s |", fmt(sp, "%.2fx"), by, fmt(rs, "%.2fx"))
    }
    print line
  }
  printf "\nwall/CPU in seconds (CPU = user + sys); RSS = peak resident set (GNU time %%M); stored = du -sb of the\n"
  printf "repository after the step in 10^6 bytes, (+added) by that step. Ratios: speed = peer time / Ferry time\n"
  printf "(> 1: Ferry faster); bytes = Ferry / peer (store after the initial snapshot, bytes added by later ones);\n"
  printf "RSS = Ferry / peer. n/a: the tool did not run or failed (reasons below).\n"

  # Targets (issue 2).
  if ("ferry" in has_tool) {
    for (d = 1; d <= 2; d++) {
      ds = d == 1 ? "mixed" : "small"
      if (!(ds in ds_seen)) continue
      check_speed("initial snapshot (" ds ") >= 2x restic throughput", ds, "initial", "restic", 2)
      check_speed("initial snapshot (" ds ") >= 2x borg throughput", ds, "initial", "borg", 2)
      check_speed("no-change snapshot (" ds ") <= 1/3 of restic's time", ds, "nochange", "restic", 3)
      check_speed("no-change snapshot (" ds ") <= 1/2 of borg's time", ds, "nochange", "borg", 2)
    }
    if (("mixed" in ds_seen) && ("borg" in has_tool)) {
      f = med("mixed", "change", "ferry", "added"); b = med("mixed", "change", "borg", "added")
      if (f == "" || b == "") target("bytes added by the 1% change <= borg's", "n/a", "")
      else target("bytes added by the 1% change <= borg's", f <= b ? "PASS" : "FAIL",
                  sprintf("ferry %.1f MB, borg %.1f MB", f / 1e6, b / 1e6))
    }
    for (d = 1; d <= 2; d++) {
      ds = d == 1 ? "mixed" : "small"
      if (!(ds in ds_seen)) continue
      check_speed("restore (" ds ") >= 2x restic throughput", ds, "restore", "restic", 2)
      check_speed("restore (" ds ") >= 2x borg throughput", ds, "restore", "borg", 2)
    }
    maxrss = ""; where = ""
    for (r = 1; r <= nrows; r++) {
      v = med(row_ds[r], row_op[r], "ferry", "rss")
      if (v != "" && (maxrss == "" || v > maxrss)) { maxrss = v; where = row_ds[r] " " opname[row_op[r]] }
    }
    if (maxrss == "") target("Ferry peak RSS <= 32 MiB", "n/a", "")
    else target("Ferry peak RSS <= 32 MiB", maxrss <= 32768 ? "PASS" : "FAIL",
                sprintf("largest median %.1f MiB (%s)", maxrss / 1024, where))
    if (!rss_scaling) target("Ferry peak RSS within 10% between 1x and 4x dataset", "SKIP", "run with --rss-scaling")
    else {
      a = med("mixed", "initial", "ferry", "rss"); b = med("mixed-4x", "initial", "ferry", "rss")
      if (a == "" || b == "") target("Ferry peak RSS within 10% between 1x and 4x dataset", "n/a", "")
      else {
        dev = (b - a) / a; if (dev < 0) dev = -dev
        target("Ferry peak RSS within 10% between 1x and 4x dataset", dev <= 0.10 ? "PASS" : "FAIL",
               sprintf("initial snapshot: %.1f MiB at 1x, %.1f MiB at 4x (%+.1f%%)", a / 1024, b / 1024, 100 * (b - a) / a))
      }
    }
    printf "\n### Targets (issue 2)\n\n"
    for (i = 1; i <= ntargets; i++) printf "- %-4s %s%s\n", tstatus[i], tname[i], tdetail[i] == "" ? "" : ": " tdetail[i]
  }
  if (nfail > 0) {
    printf "\n### Not measured / failures\n\n"
    for (i = 1; i <= nfail; i++) printf "- %s\n", fail[i]
  }

  if (json != "") {
    printf "{\n  \"date\": %s,\n  \"machine\": %s,\n  \"tools\": %s,\n  \"cache\": %s,\n  \"runs\": %d,\n  \"load_average_start\": %s,\n  \"load_average_end\": %s,\n",
      jstr(date), jstr(machine), jstr(versions), jstr(cache), runs, jstr(load_start), jstr(load_end) > json
    printf "  \"datasets\": {" > json
    for (i = 1; i <= ndesc; i++) printf "%s\n    %s: %s", (i > 1 ? "," : ""), jstr(dsname[i]), jstr(dsdesc[dsname[i]]) > json
    printf "\n  },\n  \"measurements\": [" > json
    for (i = 1; i <= nrec; i++) {
      split(rec[i], fld, "\t")
      printf "%s\n    {\"dataset\": %s, \"operation\": %s, \"tool\": %s, \"run\": %d, \"status\": %s, \"wall_s\": %s, \"cpu_s\": %s, \"peak_rss_kib\": %s, \"stored_bytes\": %s, \"added_bytes\": %s, \"cpu_stall_pct\": %s}",
        (i > 1 ? "," : ""), jstr(fld[1]), jstr(fld[2]), jstr(fld[3]), fld[4], jstr(fld[5]),
        fld[6] == "-" ? "null" : fld[6], fld[7] == "-" ? "null" : fld[7], fld[8] == "-" ? "null" : fld[8],
        fld[9] == "-" ? "null" : fld[9], fld[10] == "-" ? "null" : fld[10], (fld[11] == "-" || fld[11] == "") ? "null" : fld[11] > json
    }
    printf "\n  ],\n  \"medians\": [" > json
    first = 1
    for (r = 1; r <= nrows; r++) for (i = 1; i <= ntools; i++) {
      ds = row_ds[r]; op = row_op[r]; t = T[i]
      printf "%s\n    {\"dataset\": %s, \"operation\": %s, \"tool\": %s, \"status\": %s, \"wall_s\": %s, \"cpu_s\": %s, \"peak_rss_kib\": %s, \"stored_bytes\": %s, \"added_bytes\": %s}",
        (first ? "" : ","), jstr(ds), jstr(op), jstr(t),
        jstr(wrong[ds, op, t] ? "wrong" : (med(ds, op, t, "wall") == "" ? "n/a" : "ok")),
        jnum(med(ds, op, t, "wall")), jnum(med(ds, op, t, "cpu")), jnum(med(ds, op, t, "rss")),
        jnum(med(ds, op, t, "stored")), jnum(med(ds, op, t, "added")) > json
      first = 0
    }
    printf "\n  ],\n  \"targets\": [" > json
    for (i = 1; i <= ntargets; i++)
      printf "%s\n    {\"target\": %s, \"status\": %s, \"detail\": %s}", (i > 1 ? "," : ""), jstr(tname[i]), jstr(tstatus[i]), jstr(tdetail[i]) > json
    printf "\n  ],\n  \"failures\": [" > json
    for (i = 1; i <= nfail; i++) printf "%s\n    %s", (i > 1 ? "," : ""), jstr(fail[i]) > json
    printf "\n  ]\n}\n" > json
  }
}
AWK
}

# --- main --------------------------------------------------------------------

main() {
  parse_args "$@"
  check_cold_cache
  setup_workdir
  setup_restore_fs
  ensure_peer_tools
  ensure_ferry_binaries
  write_report_awk
  if [[ " ${TOOLS[*]} " == *" ferry "* ]]; then
    ferry_keys
    ((FERRY_READY)) || log "Ferry will be n/a: $FERRY_REASON"
  fi
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  log "work dir $WORKDIR; tools: ${TOOLS[*]}; runs: $RUNS; $( ((COLD)) && echo cold || echo warm) cache"

  run_dataset mixed 1 mixed --size "$SIZE_BYTES" --files "$FILES" --seed "$MIXED_SEED"
  run_dataset small 0 small --files "$SMALL_FILES" --seed "$SMALL_SEED"
  if ((RSS_SCALING)); then
    if [[ " ${TOOLS[*]} " == *" ferry "* ]] && ((FERRY_READY)); then
      run_rss_scaling
    else
      log "--rss-scaling skipped: Ferry is not running"
    fi
  fi

  report
  [[ -z $JSON_OUT ]] || log "JSON written to $JSON_OUT"
  if ((WRONG_RESTORE)); then
    log "FAILED: a restored tree differed from its source (see above); its figures are not results"
    exit 1
  fi
  if ((PEER_FAILED)); then
    log "FAILED: a peer tool did not complete every step (see 'Not measured / failures')"
    exit 1
  fi
}

main "$@"

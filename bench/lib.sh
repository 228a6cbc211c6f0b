# shellcheck shell=bash
# Helpers shared by the benchmark scripts (sourced, not run): sizes, process
# and machine-wide CPU accounting, and report lines. Linux only (/proc).

# "1GiB" -> 1073741824 (the suffixes ferry-gen-dataset accepts too).
size_to_bytes() {
  awk -v s="$1" 'BEGIN {
    if (match(s, /^[0-9]+(\.[0-9]+)?/) == 0) exit 1
    n = substr(s, 1, RLENGTH); u = tolower(substr(s, RLENGTH + 1))
    m["" ] = 1; m["b"] = 1; m["k"] = m["kib"] = 1024; m["m"] = m["mib"] = 1048576
    m["g"] = m["gib"] = 1073741824; m["t"] = m["tib"] = 1099511627776
    m["kb"] = 1e3; m["mb"] = 1e6; m["gb"] = 1e9
    if (!(u in m)) exit 1
    printf "%.0f\n", n * m[u]
  }'
}

human_bytes() { awk -v b="$1" 'BEGIN { if (b >= 1073741824) printf "%.2f GiB", b / 1073741824; else printf "%.1f MiB", b / 1048576 }'; }

BENCH_CLK_TCK=$(getconf CLK_TCK)

# "user sys" CPU seconds of a live process (its threads included).
proc_cpu_s() {
  awk -v hz="$BENCH_CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.2f %.2f\n", $12 / hz, $13 / hz }' "/proc/$1/stat"
}
proc_peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# "busy idle" jiffies summed over all CPUs (guest time is already in user
# time, so columns 2-9 only).
cpu_jiffies() { awk '/^cpu / { idle = $5 + $6; all = 0; for (i = 2; i <= 9; i++) all += $i; print all - idle, idle }' /proc/stat; }

# Microseconds during which some runnable task waited for a CPU, system-wide
# (Linux PSI); 0 where /proc/pressure is missing. The machine may be shared:
# this says how contended a measurement was.
cpu_stall_us() {
  awk '/^some/ { for (i = 1; i <= NF; i++) if ($i ~ /^total=/) print substr($i, 7) }' \
    /proc/pressure/cpu 2>/dev/null || echo 0
}

# The last N (default 3) lines of a log file on one line, for error messages.
last_lines() {
  local text
  text=$(tail -n "${2:-3}" -- "$1" 2>/dev/null | tr '\n' ' ')
  printf '%s' "${text:-(no output)}"
}

machine_line() {
  local cpu
  cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  printf '%s, %s cores, %s RAM, Linux %s' "${cpu:-unknown CPU}" "$(nproc)" \
    "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)" "$(uname -r)"
}

# "DIR (ext4, disk)": the filesystem a directory is on.
fs_line() {
  df -T -- "$1" | awk -v d="$1" 'NR == 2 { printf "%s (%s, %s)", d, $2, ($2 == "tmpfs" ? "memory" : "disk") }'
}

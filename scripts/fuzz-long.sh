#!/usr/bin/env bash
# Fuzz runs (make fuzz-long; make fuzz-smoke, CI's 10 s per target): every target for SECONDS of wall time, JOBS targets at a time, each at
# nice 10 so the machine stays usable. Per target it records libFuzzer's final stats
# (executions, coverage, corpus), the CPU seconds the process really got (GNU time), and
# whether it found anything (a crash, leak, timeout or OOM leaves an input under
# fuzz/artifacts/<target>/ and a non-zero exit). A summary table goes to
# .tmp/fuzz-long/summary.md (FUZZ_OUT sets the folder); the full logs stay beside it.
#
#   scripts/fuzz-long.sh SECONDS JOBS target...
set -euo pipefail
seconds="$1"; jobs="$2"; shift 2
cd "$(dirname "$0")/.."
out="${FUZZ_OUT:-.tmp/fuzz-long}"
mkdir -p "$out"
bin=fuzz/target/x86_64-unknown-linux-gnu/release

run_one() {
  local t="$1"
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  local rc=0
  # Committed seeds (fuzz/seeds/<target>, read only) start the fuzzer from valid
  # inputs; what it finds goes to fuzz/corpus/<target>.
  local seeds=()
  [ -d "fuzz/seeds/$t" ] && seeds=("fuzz/seeds/$t")
  # -timeout: one input taking 10 s is a finding (a denial of service), not a slow machine.
  /usr/bin/time -f '%U %S %e %M' -o "$out/$t.time" \
    nice -n 10 "$bin/$t" "fuzz/corpus/$t" "${seeds[@]}" \
      -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$seconds" -timeout=10 \
      -print_final_stats=1 > "$out/$t.log" 2>&1 || rc=$?
  echo "$rc" > "$out/$t.rc"
}

started=$(date -u +%FT%TZ)
running=0
for t in "$@"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait

{
  echo "Fuzz run: $seconds s wall per target, $jobs at a time on $(nproc) cores, started $started, ended $(date -u +%FT%TZ)."
  echo
  echo "| target | executions | exec/s | CPU s | coverage (cov / ft) | corpus | peak RSS | result |"
  echo "|---|---:|---:|---:|---|---:|---:|---|"
  for t in "$@"; do
    log="$out/$t.log"
    execs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" || echo "?")
    rate=$(grep -oP 'stat::average_exec_per_sec:\s*\K[0-9]+' "$log" || echo "?")
    rss=$(grep -oP 'stat::peak_rss_mb:\s*\K[0-9]+' "$log" || echo "?")
    last=$(grep -E '#[0-9]+\s+(pulse|REDUCE|NEW|DONE)' "$log" | tail -1)
    cov=$(echo "$last" | grep -oP 'cov: \K[0-9]+' || echo "?")
    ft=$(echo "$last" | grep -oP 'ft: \K[0-9]+' || echo "?")
    corp=$(echo "$last" | grep -oP 'corp: \K[0-9]+/[0-9A-Za-z]+' || echo "?")
    read -r user sys _ _ < "$out/$t.time" || true
    cpu=$(awk -v u="${user:-0}" -v s="${sys:-0}" 'BEGIN { printf "%.0f", u + s }')
    rc=$(cat "$out/$t.rc")
    found=$(ls "fuzz/artifacts/$t" | wc -l)
    if [ "$rc" = 0 ] && [ "$found" = 0 ]; then result="no finding"; else result="FINDING (exit $rc, $found input(s) in fuzz/artifacts/$t)"; fi
    echo "| $t | $execs | $rate | $cpu | $cov / $ft | $corp | ${rss} MB | $result |"
  done
} | tee "$out/summary.md"

# Fail when any target found something, so a long run cannot pass by accident.
for t in "$@"; do
  [ "$(cat "$out/$t.rc")" = 0 ] && [ -z "$(ls "fuzz/artifacts/$t")" ] || exit 1
done

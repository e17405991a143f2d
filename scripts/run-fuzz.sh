#!/usr/bin/env bash
# Runs each file reader's libFuzzer target for a bounded time, all readers
# at once (each fuzzer is one process on one core), from the seed corpora in
# tests/fuzz. A crash prints the log's tail and fails.
#   scripts/run-fuzz.sh BUILD_DIR SECONDS
set -uo pipefail
build=${1:?usage: run-fuzz.sh BUILD_DIR SECONDS}
seconds=${2:?usage: run-fuzz.sh BUILD_DIR SECONDS}
cd "$(dirname "$0")/.."

readers=(npy safetensors)
pids=()
for reader in "${readers[@]}"; do
  corpus=tests/fuzz/corpus
  [ "$reader" = npy ] || corpus=tests/fuzz/corpus-$reader
  run=$build/corpus-run-$reader
  log=$build/$reader-fuzz.log
  rm -rf "$run" && mkdir -p "$run" && cp "$corpus"/* "$run"/
  echo "fuzz: ${reader}_fuzz for $seconds s (log: $log)"
  "$build/tests/fuzz/${reader}_fuzz" -max_total_time="$seconds" \
    -max_len=4096 -timeout=10 -print_final_stats=1 "$run" > "$log" 2>&1 &
  pids+=($!)
done

status=0
for i in "${!readers[@]}"; do
  reader=${readers[$i]}
  log=$build/$reader-fuzz.log
  if wait "${pids[$i]}"; then
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log"
  else
    tail -n 60 "$log"
    echo "fuzz: $reader FAILED"
    status=1
  fi
done
exit $status

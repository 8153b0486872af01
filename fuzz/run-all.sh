#!/usr/bin/env bash
# Runs every fuzz target for DURATION each (e.g. `fuzz/run-all.sh 10m`; s, m or h), as many at
# once as the machine has cores, starting from the committed corpus and the seeds; then merges
# what each found into fuzz/corpus/<target>/, minimised (-set_cover_merge=1), and prints one
# line per target: executions, speed, corpus size, crashes. Exits 1 when any target crashed;
# the crashing input is in fuzz/artifacts/<target>/.
#
#   fuzz/run-all.sh 10m                  every target, 10 minutes each
#   fuzz/run-all.sh 30s af_json jwt      only those
#   FUZZ_RUNS=10000000 fuzz/run-all.sh 2h   stop each at 10 million executions (or 2 h)
#   FUZZ_JOBS=1 ...                      one target at a time
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install --locked cargo-fuzz`); the
# gateway itself builds on stable. Built without a sanitizer (-s none): brygga forbids unsafe
# code, and the speed goes to executions.
set -euo pipefail
cd "$(dirname "$0")"

duration=${1:-10m}
shift || true
case $duration in
*h) secs=$((${duration%h} * 3600)) ;;
*m) secs=$((${duration%m} * 60)) ;;
*s) secs=${duration%s} ;;
*) secs=$duration ;;
esac
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
jobs=${FUZZ_JOBS:-$(nproc)}
runs=${FUZZ_RUNS:--1}

python3 seed.py
cargo +nightly fuzz build -s none >/dev/null
bin=target/x86_64-unknown-linux-gnu/release
mkdir -p logs

run_one() {
    local t=$1 dict=
    case $t in
    soap_* | xml_reader) dict=-dict=dict/soap.dict ;;
    af_json | round_trip) dict=-dict=dict/json.dict ;;
    esac
    mkdir -p "corpus/$t" "artifacts/$t" "logs/$t.new"
    # New finds go to logs/<t>.new, the committed corpus and the seeds are read.
    "$bin/$t" "logs/$t.new" "corpus/$t" "seeds/$t" $dict -max_total_time="$secs" -runs="$runs" \
        -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1 || true
    # The minimised union of the old corpus, the seeds and the new finds.
    rm -rf "logs/$t.min" && mkdir -p "logs/$t.min"
    "$bin/$t" -set_cover_merge=1 "logs/$t.min" "corpus/$t" "seeds/$t" "logs/$t.new" \
        >"logs/$t.merge.log" 2>&1
    rm -rf "corpus/$t" "logs/$t.new" && mv "logs/$t.min" "corpus/$t"
}
export -f run_one
export bin secs runs

printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'

status=0
printf '%-14s %12s %10s %8s %8s\n' target executions exec/s corpus crashes
for t in "${targets[@]}"; do
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "logs/$t.log" | tail -1)
    crashes=$(find "artifacts/$t" -type f | wc -l)
    printf '%-14s %12s %10s %8s %8s\n' "$t" "${execs:-?}" "${speed:-?}" \
        "$(find "corpus/$t" -type f | wc -l)" "$crashes"
    if [ "$crashes" -gt 0 ] || grep -q '^==[0-9]*== ERROR' "logs/$t.log"; then
        echo "  $t crashed: see fuzz/logs/$t.log and fuzz/artifacts/$t/" >&2
        status=1
    fi
done
exit $status

#!/bin/sh
# Builds and runs every fuzz harness for SECONDS each (two at a time); non-zero exit on any crash.
# Usage: fuzz/run.sh [SECONDS] [OUTDIR]   (defaults: 60, fuzz/build)
# Env: FUZZ_JOBS (parallel harnesses, default 2), FUZZ_ONLY ("card rpc ...").
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-60}
OUT=${2:-$SRC/fuzz/build}
JOBS=${FUZZ_JOBS:-2}
# Absolute: fuzz_config changes its working directory before reading paths.
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
HARNESSES=${FUZZ_ONLY:-"card file frame ccm agree rpc config methods backup"}

"$SRC/fuzz/build.sh" "$OUT" >/dev/null
# Known third-party leak only (libconfig 1.5); see the file.
LSAN_OPTIONS="suppressions=$SRC/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS

# Working corpora live in OUT: the checked-in seeds plus fresh ones from
# mkseeds (always in step with the current libveil), grown by the runs.
mkdir -p "$OUT/corpus" "$OUT/logs" "$OUT/crashes"
for h in $HARNESSES; do
	mkdir -p "$OUT/corpus/$h"
	cp -p "$SRC/fuzz/corpus/$h/"* "$OUT/corpus/$h/" 2>/dev/null || true
done
# The config seeds are the golden test files and the shipped example.
mkdir -p "$OUT/corpus/config"
cp -p "$SRC/tests/conf/"*.conf "$SRC/conf/veild.conf" "$OUT/corpus/config/"
"$OUT/mkseeds" "$OUT/corpus" >/dev/null

max_len() {
	case $1 in
	card) echo 1100 ;;	# VEIL_CARD_URI_MAX and some whitespace
	file) echo 600 ;;	# VEIL_FILE_OFFER_MAX (318) and chunk data
	frame) echo 1600 ;;	# selector, seq, a 1024-byte frame, reasm records
	ccm) echo 2100 ;;	# VEIL_UPDATE_BODY_MAX and some
	agree) echo 1100 ;;	# VEIL_PAIR/AGREE_PACKED_MAX and some
	rpc) echo 4096 ;;
	methods) echo 4096 ;;
	config) echo 8192 ;;	# conf/veild.conf is 6.7 KB
	backup) echo 140000 ;;	# a header and two chunks of 65553 bytes
	esac
}

run_one() {
	h=$1
	log="$OUT/logs/$h.log"
	rc=0
	dict=""
	[ -f "$SRC/fuzz/dict/$h.dict" ] && dict="-dict=$SRC/fuzz/dict/$h.dict"
	# shellcheck disable=SC2086
	"$OUT/fuzz_$h" -max_total_time="$SECS" -max_len="$(max_len "$h")" \
	    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 $dict \
	    -artifact_prefix="$OUT/crashes/$h-" \
	    "$OUT/corpus/$h" >"$log" 2>&1 || rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
	if [ "$rc" -eq 0 ]; then
		echo "ok    $h: ${execs:-?} execs, ${rate:-?}/s, cov ${cov:-?}, ${SECS}s"
	else
		echo "CRASH $h (exit $rc): see $log; artifacts $OUT/crashes/$h-*"
		grep -E '^(==[0-9]+==ERROR|SUMMARY|    #[0-9] )' "$log" | head -12
	fi
	return "$rc"
}

fail=0
set -- $HARNESSES
while [ $# -gt 0 ]; do
	pids=""
	i=0
	while [ $# -gt 0 ] && [ "$i" -lt "$JOBS" ]; do
		run_one "$1" >"$OUT/logs/$1.result" &
		pids="$pids $!"
		shift
		i=$((i + 1))
	done
	for p in $pids; do
		wait "$p" || fail=1
	done
done
for h in $HARNESSES; do
	cat "$OUT/logs/$h.result"
done
exit "$fail"

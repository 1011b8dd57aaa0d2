#!/bin/sh
# fuzz/ci.sh: CI's fuzz step — every libFuzzer harness built with clang and run over the committed corpus for a bounded time; a crash, leak, timeout or out-of-memory fails the step and prints the reproducer.
# Usage: fuzz/ci.sh [SECONDS]   (per harness; default $FUZZ_CI_SECONDS, else 60)
# Env: FUZZ_CI_OUT (default fuzz/build/ci), FUZZ_JOBS (default 2), FUZZ_ONLY.
#
# Nine harnesses, two at a time, 60 s each: five rounds, 5 minutes, plus
# the build (about a minute from scratch on two cores): the step stays
# within about seven minutes, so that with tools/quickstart check CI stays
# well inside its limit.  Every run starts afresh from the committed
# seeds (fuzz/corpus/NAME, the config files) and fuzz/mkseeds' output,
# never from what an earlier run grew.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-${FUZZ_CI_SECONDS:-60}}
OUT=${FUZZ_CI_OUT:-$SRC/fuzz/build/ci}
FUZZ_JOBS=${FUZZ_JOBS:-2}
export FUZZ_JOBS

say() { printf 'fuzz: %s\n' "$*" >&2; }

t0=$(date +%s)
rm -rf "$OUT/corpus" "$OUT/crashes" "$OUT/logs"
mkdir -p "$OUT"
rc=0
say "building the harnesses, then each for ${SECS} s, $FUZZ_JOBS at a time"
sh "$SRC/fuzz/run.sh" "$SECS" "$OUT" || rc=$?

# The reproducers: each input that crashed, leaked, timed out or ran out
# of memory, in base64 (the CI log is all that may survive), with the
# sanitizer's report and how to replay it.
n=0
for f in "$OUT"/crashes/*; do
	[ -e "$f" ] || continue
	n=$((n + 1))
	base=$(basename "$f")
	h=${base%%-*}
	size=$(wc -c < "$f")
	echo "=== reproducer $n: $base ($size bytes), harness fuzz_$h"
	echo "--- what the sanitizer or libFuzzer said (from $OUT/logs/$h.log):"
	grep -E '^(==[0-9]+==|SUMMARY|    #[0-9]+ |ALARM|.*deadly signal|.*Test unit written)' \
	    "$OUT/logs/$h.log" 2>/dev/null | head -n 40 || true
	echo "--- the input, base64 (decode: base64 -d > $base):"
	if [ "$size" -le 65536 ]; then
		base64 "$f"
	else
		head -c 65536 "$f" | base64
		echo "(first 64 KiB of $size bytes only)"
	fi
	echo "--- replay: $OUT/fuzz_$h $f"
	echo "    keep it: cp $f fuzz/crashes/$h-NAME (make check then replays it)"
done
[ $n -gt 0 ] && rc=1
say "$n reproducers; $(( $(date +%s) - t0 )) s in all"
exit "$rc"

#!/bin/sh
# Golden config tests: `veild -n -c NAME.conf` against tests/conf/NAME.ok, in TAP.
#
# For each tests/conf/NAME.conf the combined stdout and stderr must equal
# NAME.ok byte for byte; the exit status must be 1 for bad-*.conf and 0 for
# the others.  A valid config's output must also read back unchanged (the
# printer and the parser agree).  The daemon runs inside tests/conf with a
# relative file name, so messages name "NAME.conf:LINE" whatever the build
# directory.  VEILD overrides the binary (default: the build tree's).

top_srcdir=${VEIL_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${VEIL_TOP_BUILDDIR:-$top_srcdir}
veild=${VEILD:-$top_builddir/daemon/veild}
confdir=$top_srcdir/tests/conf

case $veild in
/*) ;;
*) veild=$(pwd)/$veild ;;
esac
if [ ! -x "$veild" ]; then
	echo "Bail out! no veild at $veild"
	exit 1
fi
cd "$confdir" || { echo "Bail out! no $confdir"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/veil-conf.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM

LC_ALL=C
export LC_ALL
# A stray sanitizer or environment setting must not change what is printed.
unset http_proxy https_proxy

confs=$(ls *.conf)
nconf=0
nvalid=0
for f in $confs; do
	nconf=$((nconf + 1))
	case $f in bad-*) ;; *) nvalid=$((nvalid + 1)) ;; esac
done
echo "1..$((nconf + nvalid + 3))"

i=0
failed=0

report() {	# report OK NAME [DIFF-FILE]
	i=$((i + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $i - $2"
	else
		failed=$((failed + 1))
		echo "not ok $i - $2"
		[ -n "$3" ] && sed 's/^/# /' "$3"
	fi
}

# check NAME RC-WANTED OUT-FILE RC-GOT EXPECTED-FILE
check() {
	if [ ! -f "$5" ]; then
		echo "missing $5" > "$tmp/diff"
		report 1 "$1" "$tmp/diff"
	elif [ "$4" -ne "$2" ]; then
		{ echo "exit status $4, want $2; output:"; cat "$3"; } \
		    > "$tmp/diff"
		report 1 "$1" "$tmp/diff"
	elif ! diff -u "$5" "$3" > "$tmp/diff" 2>&1; then
		report 1 "$1" "$tmp/diff"
	else
		report 0 "$1"
	fi
}

for f in $confs; do
	name=${f%.conf}
	case $name in bad-*) want=1 ;; *) want=0 ;; esac
	"$veild" -n -c "$f" > "$tmp/out" 2>&1
	rc=$?
	check "$name" "$want" "$tmp/out" "$rc" "$name.ok"

	[ "$want" -eq 0 ] || continue
	# Round trip: the printed configuration is itself a valid config
	# that prints the same.
	cp "$tmp/out" "$tmp/rt.conf"
	"$veild" -n -c "$tmp/rt.conf" > "$tmp/rt.out" 2>&1
	rc=$?
	check "$name round trip" 0 "$tmp/rt.out" "$rc" "$tmp/out"
done

printf 'veild: absent.conf: No such file or directory\n' > "$tmp/absent.ok"
"$veild" -n -c absent.conf > "$tmp/out" 2>&1
rc=$?
check "missing file" 1 "$tmp/out" "$rc" "$tmp/absent.ok"

# The shipped example sets every key to its default (and the name to
# "Alice", as minimal.conf does): its documented defaults are the real ones.
example=$top_srcdir/conf/veild.conf
"$veild" -n -c "$example" > "$tmp/out" 2>&1
rc=$?
check "conf/veild.conf states the defaults" 0 "$tmp/out" "$rc" minimal.ok

: > "$tmp/diff"
for key in $(sed -n 's/^ *\([a-z_]*\) = .*/\1/p' minimal.ok); do
	grep -q "^ *$key = " "$example" ||
	    echo "conf/veild.conf does not set $key" >> "$tmp/diff"
done
if [ -s "$tmp/diff" ]; then
	report 1 "conf/veild.conf sets every key" "$tmp/diff"
else
	report 0 "conf/veild.conf sets every key"
fi

[ "$failed" -eq 0 ]

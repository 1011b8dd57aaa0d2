#!/bin/sh
# The unit is valid and its sandbox stays at systemd-analyze's "OK" level
# (exposure <= 2.0 of 10).  Works without systemd as PID 1 (--offline).
set -u
top=${VEIL_TOP_SRCDIR:?VEIL_TOP_SRCDIR is not set (run through make check)}
build=${VEIL_TOP_BUILDDIR:?VEIL_TOP_BUILDDIR is not set (run through make check)}
echo "1..3"
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "Bail out! systemd-analyze is missing (Debian: systemd)"
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The unit as installed, but pointing at this build's binary.
sed "s|@sbindir@|$build/daemon|" "$top/systemd/veild.service.in" > "$tmp/veild.service"
n=1
check() {	# description, command...
	d=$1; shift
	if out=$("$@" 2>&1); then
		echo "ok $n - $d"
	else
		echo "not ok $n - $d"
		printf '%s\n' "$out" | sed 's/^/# /'
	fi
	n=$((n + 1))
}
check "systemd-analyze verify accepts the unit" \
    systemd-analyze verify --man=no "$tmp/veild.service"
check "sandbox exposure at most 2.0 (OK)" \
    systemd-analyze security --offline=true --threshold=20 "$tmp/veild.service"
# Type=notify needs the daemon to say READY=1: it links libsystemd.
check "veild speaks sd_notify" sh -c "nm -D '$build/daemon/.libs/veild' 2>/dev/null | grep -q sd_notify || nm -D '$build/daemon/veild' | grep -q sd_notify"

#!/bin/sh
# test_tor.sh: tools/tor-testnet as a test: a private Tor network on 127.0.0.1, two veild talking through it, every client ID on a circuit of its own (docs/tor.md).
# TAP: one check per line of the run's summary that the claim rests on.
: "${VEIL_TOP_SRCDIR:?run through make check}" "${VEIL_TOP_BUILDDIR:?run through make check}"
out=$(python3 "$VEIL_TOP_SRCDIR/tools/tor-testnet" --builddir "$VEIL_TOP_BUILDDIR" \
    --bootstrap-timeout 180 2>&1)
rc=$?
echo "$out" | sed 's/^/# /'
n=0
check() {	# description, condition (shell test)
	n=$((n + 1))
	if eval "$2"; then echo "ok $n - $1"; else echo "not ok $n - $1"; fi
}
field() {	# the value after a summary label
	echo "$out" | sed -n "s/^$1  *//p" | head -n 1
}
del=$(field "messages delivered")
check "tor-testnet exits 0 (exit $rc)" '[ "$rc" -eq 0 ]'
check "every message crossed the Tor network ($del)" \
    '[ -n "$del" ] && [ "${del%% of *}" = "${del##* of }" ]'
check "no stream to the broker without proxy credentials" \
    '[ "$(field "streams without credentials")" = 0 ]'
check "no circuit carried two credentials" \
    '[ "$(field "circuits carrying two credentials")" = 0 ]'
check "no circuit carried two client IDs" \
    '[ "$(field "circuits shared by two client IDs")" = 0 ]'
check "every client ID at the broker has its circuit" \
    '[ "$(field "client IDs at the broker with no circuit found")" = 0 ]'
echo "1..$n"

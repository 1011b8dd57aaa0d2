#!/bin/sh
# The unit is valid and its sandbox stays at systemd-analyze's "OK" level
# (exposure <= 2.0 of 10), and veild speaks Type=notify: READY=1 once it
# serves, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM, read
# from a NOTIFY_SOCKET this test listens on.  Works without systemd as
# PID 1 (--offline).
set -u
top=${VEIL_TOP_SRCDIR:?VEIL_TOP_SRCDIR is not set (run through make check)}
build=${VEIL_TOP_BUILDDIR:?VEIL_TOP_BUILDDIR is not set (run through make check)}
echo "1..5"
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "Bail out! systemd-analyze is missing (Debian: systemd)"
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The unit as installed, but pointing at this build's binary.
sed -e "s|@sbindir@|$build/daemon|" -e "s|@sysconfdir@|/etc|" "$top/systemd/veild.service.in" > "$tmp/veild.service"
n=1
failed=0
check() {	# description, command...
	d=$1; shift
	if out=$("$@" 2>&1); then
		echo "ok $n - $d"
	else
		echo "not ok $n - $d"
		printf '%s\n' "$out" | sed 's/^/# /'
		failed=1
	fi
	n=$((n + 1))
}
check "systemd-analyze verify accepts the unit" \
    systemd-analyze verify --man=no "$tmp/veild.service"
check "sandbox exposure at most 2.0 (OK)" \
    systemd-analyze security --offline=true --threshold=20 "$tmp/veild.service"

# Type=notify: what veild tells the service manager, from a NOTIFY_SOCKET.
python3 - "$tmp" "$build/daemon/veild" "$n" <<'PY' || failed=1
import os, signal, socket, subprocess, sys, time
tmp, veild, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
path = os.path.join(tmp, "notify")
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
conf = os.path.join(tmp, "veild.conf")
with open(conf, "w") as f:
    # No broker: readiness is about serving the socket, not the network.
    f.write('state_dir = "%s/state"; socket = "%s/sock"; identity = { name = "N"; };\n'
            'mqtt = { uris = [ "tcp://127.0.0.1:9" ]; };\n' % (tmp, tmp))
log = open(os.path.join(tmp, "veild.log"), "wb")
p = subprocess.Popen([veild, "-d", "-c", conf], stdin=subprocess.DEVNULL, stdout=log,
                     stderr=subprocess.STDOUT, env=dict(os.environ, NOTIFY_SOCKET=path))
got = []
bad = 0


def until(word, timeout=15):
    """Reads datagrams until one has the line word: whether it came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            m = s.recv(4096).decode("utf-8", "replace")
        except socket.timeout:
            break
        got.append(m)
        if word in m.split("\n"):
            return True
    return False


def ok(cond, what):
    global n, bad
    print("%s %d - %s" % ("ok" if cond else "not ok", n, what))
    if not cond:
        bad = 1
        print("# datagrams: %r" % got)
        with open(os.path.join(tmp, "veild.log"), errors="replace") as f:
            for line in f.read().splitlines()[-20:]:
                print("# " + line)
    sys.stdout.flush()
    n += 1


try:
    ready = until("READY=1")
    serving = os.path.exists(os.path.join(tmp, "sock"))
    ok(ready and serving and p.poll() is None,
       "NOTIFY_SOCKET gets READY=1, and veild serves its socket by then")
    got.clear()
    p.send_signal(signal.SIGHUP)
    ok(until("RELOADING=1") and until("READY=1"), "SIGHUP: RELOADING=1, then READY=1")
    got.clear()
    p.send_signal(signal.SIGTERM)
    ok(until("STOPPING=1") and p.wait(10) == 0, "SIGTERM: STOPPING=1, then exit 0")
finally:
    if p.poll() is None:
        p.kill()
sys.exit(bad)
PY
exit $failed

#!/bin/sh
# The unit is valid and its sandbox stays at systemd-analyze's "OK" level
# (exposure <= 1.2 of 10), and veild speaks Type=notify: READY=1 once it
# serves, RELOADING=1 then READY=1 on SIGHUP, STOPPING=1 on SIGTERM, read
# from a NOTIFY_SOCKET this test listens on.  The unit loads the data
# key's encrypted credential; a credential made with systemd-creds
# (encrypt --with-key=host, decrypt, as the service manager would) and
# handed over in $CREDENTIALS_DIRECTORY unlocks veild at start, and
# without it veild starts locked.  Works without systemd as PID 1
# (--offline); the credential part needs root (the host key is root's).
set -u
top=${VEIL_TOP_SRCDIR:?VEIL_TOP_SRCDIR is not set (run through make check)}
build=${VEIL_TOP_BUILDDIR:?VEIL_TOP_BUILDDIR is not set (run through make check)}
echo "1..10"
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
check "sandbox exposure at most 1.2 (OK)" \
    systemd-analyze security --offline=true --threshold=12 "$tmp/veild.service"
check "the unit loads the credential veil.key (LoadCredentialEncrypted=)" \
    grep -qx 'LoadCredentialEncrypted=veil.key' "$tmp/veild.service"

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
n=$((n + 3))

# The credential: made and opened by systemd-creds, used by veild.
if [ "$(id -u)" != 0 ]; then
	for d in "systemd-creds encrypt and decrypt the data key" \
	    "veild unlocks by the credential in \$CREDENTIALS_DIRECTORY" \
	    "without it veild starts locked" \
	    "with it again it unlocks again, the same state"; do
		echo "ok $n - $d # SKIP root only: systemd-creds --with-key=host needs the host key, which is root's"
		n=$((n + 1))
	done
	exit $failed
fi
head -c 32 /dev/urandom > "$tmp/plain.key"
mkdir -m 700 "$tmp/creds"
check "systemd-creds encrypt and decrypt the data key" sh -c "
    systemd-creds encrypt --name=veil.key --with-key=host '$tmp/plain.key' '$tmp/veil.key.cred' &&
    systemd-creds decrypt --name=veil.key '$tmp/veil.key.cred' '$tmp/creds/veil.key' &&
    cmp '$tmp/plain.key' '$tmp/creds/veil.key' && ! cmp -s '$tmp/plain.key' '$tmp/veil.key.cred'"
python3 - "$tmp" "$build/daemon/veild" "$n" <<'PY' || failed=1
import json, os, socket, subprocess, sys, time
tmp, veild, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
conf = os.path.join(tmp, "cred.conf")
with open(conf, "w") as f:
    f.write('state_dir = "%s/cstate"; socket = "%s/csock"; identity = { name = "C"; };\n'
            'mqtt = { uris = [ "tcp://127.0.0.1:9" ]; };\n' % (tmp, tmp))
bad = 0


def status():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(os.path.join(tmp, "csock"))
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"status"}\n')
    buf = b""
    while b"\n" not in buf:
        buf += s.recv(65536)
    s.close()
    return json.loads(buf)["result"]


def run(creds):
    env = dict(os.environ)
    env.pop("CREDENTIALS_DIRECTORY", None)
    if creds:
        env["CREDENTIALS_DIRECTORY"] = os.path.join(tmp, "creds")
    log = open(os.path.join(tmp, "cred.log"), "ab")
    p = subprocess.Popen([veild, "-d", "-c", conf], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=subprocess.STDOUT, env=env)
    st = None
    for _ in range(200):
        try:
            st = status()
            break
        except OSError:
            time.sleep(0.05)
    p.terminate()
    p.wait(10)
    return st


def ok(cond, what, diag):
    global n, bad
    print("%s %d - %s" % ("ok" if cond else "not ok", n, what))
    if not cond:
        bad = 1
        print("# %r" % (diag,))
        with open(os.path.join(tmp, "cred.log"), errors="replace") as f:
            for line in f.read().splitlines()[-15:]:
                print("# " + line)
    sys.stdout.flush()
    n += 1


st = run(True)
ok(st is not None and st.get("locked") is False and st["unlock"]["credential"] is True,
   "veild unlocks by the credential in $CREDENTIALS_DIRECTORY", st)
st = run(False)
ok(st is not None and st.get("locked") is True and st.get("state") == "locked",
   "without it veild starts locked", st)
st = run(True)
ok(st is not None and st.get("locked") is False and
   "unlock: by the systemd credential" in open(os.path.join(tmp, "cred.log")).read(),
   "with it again it unlocks again, the same state", st)
sys.exit(bad)
PY
exit $failed
